"""A visual check of generated samples: ``gallery.png`` (a PIL grid) and ``index.html`` (links to the PNGs)."""

from __future__ import annotations

import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from anofast.data.folder import atomic_write_bytes, read_pil

COLUMNS = ("original", "anomalous", "mask", "overlay")
_CARDS_PER_ROW = 2
_PAD = 6
_TEXT_H = 16
_OVERLAY_ALPHA = 0.5  # weight of the red inside the mask


def overlay(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The image with the mask painted in translucent red (mask > 127 counts as anomalous)."""
    img = np.asarray(image.convert("RGB"), dtype=np.float32)
    m = np.asarray(mask.convert("L").resize(image.size, Image.Resampling.NEAREST)) > 127
    red = np.array([255.0, 0.0, 0.0], dtype=np.float32)
    out = np.where(m[..., None], img + _OVERLAY_ALPHA * (red - img), img)
    return Image.fromarray(np.floor(out + 0.5).astype(np.uint8), "RGB")


def _thumb(im: Image.Image, side: int) -> Image.Image:
    scale = side / max(im.width, im.height)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.convert("RGB").resize(size, Image.Resampling.BILINEAR)


def _href(target: Path, out_dir: Path) -> str:
    try:
        return quote(Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix())
    except ValueError:  # Windows: another drive has no relative path
        return target.resolve().as_uri()


def write_gallery(
    out_dir: str | os.PathLike,
    originals: Sequence[str | os.PathLike],
    images: Sequence[str | os.PathLike],
    masks: Sequence[str | os.PathLike],
    captions: Sequence[str],
    *,
    thumb: int = 160,
) -> tuple[Path, Path]:
    """Writes ``gallery.png``, ``index.html`` and one overlay PNG per sample into ``out_dir``.

    ``gallery.png`` shows, per sample, the original, the anomalous image, the mask and the mask in red over
    the anomalous image, with the caption underneath; ``index.html`` shows the same at full size with
    relative links to the PNG files (so the folder can be moved or served as is).

    Args:
        out_dir: destination folder (created if needed); overlays go to ``out_dir/overlays/<image stem>.png``.
        originals: image files of the inputs (any format PIL reads).
        images: the anomalous image files.
        masks: the mask files (white = anomalous).
        captions: one line of text per sample.
        thumb: longest side of a thumbnail in ``gallery.png``, in pixels.

    Returns:
        The paths of ``gallery.png`` and ``index.html``.

    Raises:
        ValueError: the four sequences differ in length or are empty.
    """
    n = len(images)
    if n == 0 or not len(originals) == len(masks) == len(captions) == n:
        raise ValueError(
            f"originals, images, masks and captions must be non-empty and of one length, got "
            f"{len(originals)}, {n}, {len(masks)}, {len(captions)}"
        )
    out = Path(out_dir)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    font = ImageFont.load_default()
    card_w = len(COLUMNS) * (thumb + _PAD)
    card_h = thumb + _TEXT_H + _PAD
    per_row = min(_CARDS_PER_ROW, n)
    rows = (n + per_row - 1) // per_row
    sheet = Image.new("RGB", (per_row * card_w + _PAD, _TEXT_H + rows * card_h + _PAD), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for c in range(per_row):
        for j, name in enumerate(COLUMNS):
            draw.text((_PAD + c * card_w + j * (thumb + _PAD), 2), name, fill=(200, 200, 200), font=font)
    overlay_paths = []
    for i in range(n):
        image = read_pil(images[i])
        mask = read_pil(masks[i]).convert("L")
        ov = overlay(image, mask)
        ov_path = out / "overlays" / f"{Path(images[i]).stem}.png"
        atomic_write_bytes(ov_path, _png_bytes(ov))
        overlay_paths.append(ov_path)
        x0 = _PAD + (i % per_row) * card_w
        y0 = _TEXT_H + (i // per_row) * card_h
        for j, im in enumerate((read_pil(originals[i]), image, mask, ov)):
            sheet.paste(_thumb(im, thumb), (x0 + j * (thumb + _PAD), y0))
        draw.text((x0, y0 + thumb + 1), captions[i], fill=(235, 235, 235), font=font)
    gallery = out / "gallery.png"
    atomic_write_bytes(gallery, _png_bytes(sheet))

    head = "".join(f"<th>{name}</th>" for name in ("sample", *COLUMNS))
    body = []
    for i in range(n):
        cells = [f"<td>{html.escape(captions[i])}</td>"]
        for p in (originals[i], images[i], masks[i], overlay_paths[i]):
            h = _href(Path(p), out)
            cells.append(f'<td><a href="{h}"><img src="{h}" loading="lazy"></a></td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    page = (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>anofast samples</title>\n"
        "<style>body{font-family:sans-serif;background:#202020;color:#ddd}"
        "td{padding:4px;vertical-align:top}img{max-width:256px;image-rendering:pixelated}</style></head>\n"
        f"<body><p><a href=\"gallery.png\">gallery.png</a></p>\n<table><tr>{head}</tr>\n"
        + "\n".join(body)
        + "\n</table></body></html>\n"
    )
    index = out / "index.html"
    atomic_write_bytes(index, page.encode("utf-8"))
    return gallery, index


def _png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
