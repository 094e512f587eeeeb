"""``anofast generate --method pointcloud|depth``: 3D anomaly data sets with a picture gallery.

- ``pointcloud``: ``--input`` is a folder of .pcd / .ply / .npz clouds (NaN points are dropped). Sample ``k``
  uses cloud ``k % n`` with seed ``anofast.sample_seeds(seed, 1, k)`` and is written in the input's format as
  ``clouds/NNNNNN.<ext>`` with a per-point ``labels`` field.
- ``depth``: ``--input`` is an MVTec 3D-AD sample folder (``rgb/`` + ``xyz/``), or a folder holding one
  ``xyz.tiff`` and ``rgb*.png`` (the Middlebury motorcycle scene); writes ``images/`` (rgb), ``xyz/`` (tiff),
  ``masks/`` (``mask``), ``masks_geo/``, ``masks_rgb/``.

Both write ``manifest.jsonl`` (a line per sample with its parameters) and ``run.json``; ``--gallery`` adds
``gallery.png`` and ``index.html``: before / after renderings, the labels or masks, and the height field.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anofast._rng import sample_seeds
from anofast.data.folder import atomic_write_bytes, encode_png

GALLERY_SAMPLES = 8


def _cli() -> Any:
    from anofast import cli

    return cli


def _write_json_line(manifest: Any, entry: dict[str, Any]) -> None:
    manifest.write((json.dumps(entry) + "\n").encode())
    manifest.flush()


def _png(arr: np.ndarray) -> bytes:
    return encode_png(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1))


def _gallery(out: Path, rows: list[list[tuple[str, np.ndarray]]], captions: list[str]) -> Path:
    """``gallery.png`` (a contact sheet) and ``index.html`` with each picture as a PNG under ``renders/``."""
    from anofast.three_d.render import contact_sheet

    (out / "renders").mkdir(exist_ok=True)
    body = []
    for i, row in enumerate(rows):
        cells = [f"<td>{html.escape(captions[i])}</td>"]
        for title, pic in row:
            name = f"renders/{i:03d}_{title.replace(' ', '_')}.png"
            atomic_write_bytes(out / name, _png(pic))
            cells.append(f'<td>{html.escape(title)}<br><a href="{name}"><img src="{name}"></a></td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    sheet = contact_sheet(rows, captions)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    atomic_write_bytes(out / "gallery.png", buf.getvalue())
    page = ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>anofast 3D samples</title><style>"
            "body{font-family:sans-serif;background:#202020;color:#ddd}td{padding:4px;vertical-align:top}"
            "img{max-width:256px}</style></head>\n<body><p><a href=\"gallery.png\">gallery.png</a></p><table>\n"
            + "\n".join(body) + "\n</table></body></html>\n")
    atomic_write_bytes(out / "index.html", page.encode())
    return out / "index.html"


def _prepare(args: argparse.Namespace, method: str, preset: str, generator: Any, inputs: list[Any],
             extra: dict[str, Any]) -> tuple[Path, int, int]:
    """Checks and prepares the output folder (run.json, resume) through the 2D command's helpers."""
    cli = _cli()
    count = args.count or len(inputs)
    digest_inputs = [cli._Input(str(p), path=Path(p)) for p in inputs]
    run = cli._run_config("generate", method, preset, generator, args.seed, count, args.batch_size, None,
                          digest_inputs, {"input": str(Path(args.input).resolve()), **extra})
    out = Path(args.output)
    done = cli._prepare_output(out, run, args.resume)
    return out, count, done


def generate_pointcloud(args: argparse.Namespace) -> int:
    """``anofast generate --method pointcloud``."""
    from anofast.three_d.io import list_point_clouds, read_point_cloud, write_point_cloud
    from anofast.three_d.pointcloud import PointCloudAnomaly
    from anofast.three_d.render import render_points, view_frame

    cli = _cli()
    t0 = time.perf_counter()
    preset = args.preset or "default"
    try:
        inputs = list_point_clouds(args.input)
        generator = PointCloudAnomaly.preset(preset)
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        raise cli.CLIError(str(e)) from None
    out, count, done = _prepare(args, "pointcloud", preset, generator, inputs, {})
    (out / "clouds").mkdir(exist_ok=True)
    seeds = sample_seeds(args.seed, count)
    with open(out / cli.MANIFEST, "ab") as manifest:
        for k in range(done, count):
            path = inputs[k % len(inputs)]
            data = read_point_cloud(path, drop_invalid=True)
            res = generator(data.points, seed=seeds[k:k + 1])
            name = f"clouds/{k:06d}{path.suffix.lower()}"
            colors = None
            if data.colors is not None:
                colors = np.where((res.index >= 0)[:, None], data.colors[np.maximum(res.index, 0)], 128)
            write_point_cloud(out / name, res.points, colors=colors, labels=res.labels)
            _write_json_line(manifest, {
                "index": k, "cloud": name, "source": path.name, "seed": int(seeds[k]),
                "label": int(res.labels.any()), "points": len(res.points), "labelled_points": int(res.labels.sum()),
                "params": res.params,
            })
    for sub in ("images", "masks"):  # made by the shared output preparation; unused by point clouds
        if (out / sub).is_dir() and not any((out / sub).iterdir()):
            (out / sub).rmdir()
    dt = time.perf_counter() - t0
    print(f"anofast generate: {count - done} point clouds written to {out} in {dt:.1f} s")
    if args.gallery:
        rows, captions = [], []
        for e in cli._read_manifest(out / cli.MANIFEST)[0][:GALLERY_SAMPLES]:
            before = read_point_cloud(Path(args.input) / e["source"], drop_invalid=True)
            after = read_point_cloud(out / e["cloud"])
            res = generator(before.points, seed=torch.tensor([e["seed"]]))
            frame = view_frame(before.points)
            height = _signed_offset(res, before.points, generator)
            rows.append([("before", render_points(before.points, frame=frame)),
                         ("after", render_points(after.points, frame=frame)),
                         ("labels", render_points(after.points, frame=frame, labels=after.labels)),
                         ("height", render_points(after.points, frame=frame, values=height))])
            captions.append(f"#{e['index']} {e['source']} {'+'.join(e['params']['kinds']) or 'normal'} "
                            f"{e['labelled_points']} labelled")
        print(f"gallery: {_gallery(out, rows, captions)}")
    return 0


def _signed_offset(res: Any, points: np.ndarray, generator: Any) -> np.ndarray:
    """Per output point: how far it moved, signed + away from the surface (outward / towards the camera)."""
    kept = res.index >= 0
    src = points[res.index[kept]].astype(np.float64)
    delta = np.asarray(res.points)[kept].astype(np.float64) - src
    ref = src - points.astype(np.float64).mean(0) if generator.orient == "outward" else generator.camera - src
    h = np.zeros(len(res.points))
    h[kept] = np.linalg.norm(delta, axis=1) * np.sign(np.einsum("ni,ni->n", delta, ref))
    return h


def _depth_inputs(root: Path) -> list[tuple[Path, Path]]:
    """(rgb png, xyz tiff) pairs of an MVTec 3D-AD sample folder or a one-scene folder (xyz.tiff + rgb*.png)."""
    from anofast.three_d.io import _tiff, list_mvtec3d_samples

    if (root / "rgb").is_dir() or (root / "xyz").is_dir():
        return [(root / "rgb" / f"{s}.png", _tiff(root / "xyz", s)) for s in list_mvtec3d_samples(root)]
    rgbs = sorted(root.glob("rgb*.png"))
    if (root / "xyz.tiff").is_file() and rgbs:
        return [(rgbs[0], root / "xyz.tiff")]
    raise FileNotFoundError(f"{root} is neither an MVTec 3D-AD sample folder (rgb/ + xyz/) nor a folder with "
                            f"xyz.tiff and rgb*.png")


def generate_depth(args: argparse.Namespace) -> int:
    """``anofast generate --method depth``."""
    from anofast.data.folder import read_image
    from anofast.three_d.depth import DepthAnomaly
    from anofast.three_d.io import read_xyz_tiff, write_xyz_tiff
    from anofast.three_d.render import colormap, shade_xyz

    cli = _cli()
    t0 = time.perf_counter()
    preset = args.preset or "default"
    if preset != "default":
        raise cli.CLIError(f"--preset {preset!r} is not a preset of --method depth (one of ('default',))")
    try:
        inputs = _depth_inputs(Path(args.input))
    except FileNotFoundError as e:
        raise cli.CLIError(str(e)) from None
    first = read_xyz_tiff(inputs[0][1])
    z = first[2][first[2] > 0]
    # MVTec 3D-AD stores metres; a median depth above 20 units can only be millimetres (the Middlebury scene)
    unit = 0.001 if z.numel() and float(z.median()) > 20 else 1.0
    generator = DepthAnomaly(xyz_unit=unit)
    generator.config = lambda: {"repr": repr(generator), "xyz_unit": unit}  # type: ignore[method-assign]
    out, count, done = _prepare(args, "depth", preset, generator, [p for pair in inputs for p in pair],
                                {"xyz_unit": unit})
    for sub in ("xyz", "masks_geo", "masks_rgb"):
        (out / sub).mkdir(exist_ok=True)
    seeds = sample_seeds(args.seed, count)
    rows: list[list[tuple[str, np.ndarray]]] = []  # gallery rows of the samples made by this run
    captions: list[str] = []
    with open(out / cli.MANIFEST, "ab") as manifest:
        for k in range(done, count):
            rgb_path, xyz_path = inputs[k % len(inputs)]
            rgb, xyz = read_image(rgb_path), read_xyz_tiff(xyz_path)
            res = generator(rgb[None], xyz=xyz[None], seed=seeds[k:k + 1])
            name = f"{k:06d}"
            atomic_write_bytes(out / "images" / f"{name}.png", encode_png(res.image[0]))
            write_xyz_tiff(out / "xyz" / f"{name}.tiff", res.xyz[0])
            for sub, m in (("masks", res.mask), ("masks_geo", res.mask_geo), ("masks_rgb", res.mask_rgb)):
                atomic_write_bytes(out / sub / f"{name}.png", encode_png(m[0]))
            params = {key: cli._json_value(v[0]) for key, v in res.params.items()}
            _write_json_line(manifest, {
                "index": k, "image": f"images/{name}.png", "mask": f"masks/{name}.png", "xyz": f"xyz/{name}.tiff",
                "source": rgb_path.name if len(inputs) == 1 else rgb_path.stem, "seed": int(seeds[k]),
                "label": int(res.label[0]), "mask_pixels": int(res.mask[0].sum()), "params": params,
            })
            if args.gallery and k < GALLERY_SAMPLES:
                h = res.height[0, 0].numpy()
                lim = float(np.abs(h).max()) or 1.0
                grey = (res.mask_geo[0, 0].numpy() * 255).astype(np.uint8)
                grey_rgb = (res.mask_rgb[0, 0].numpy() * 255).astype(np.uint8)
                row = [("rgb before", rgb.permute(1, 2, 0).numpy()),
                       ("rgb after", (res.image[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)),
                       ("depth before", shade_xyz(xyz)), ("depth after", shade_xyz(res.xyz[0])),
                       ("mask_geo", np.repeat(grey[..., None], 3, 2)), ("mask_rgb", np.repeat(grey_rgb[..., None], 3, 2)),
                       ("height", colormap(h, lim))]
                rows.append(row)
                captions.append(f"#{k} {rgb_path.name} " + ("anomaly" if int(res.label[0]) else "normal"))
    dt = time.perf_counter() - t0
    print(f"anofast generate: {count - done} RGB-D samples written to {out} in {dt:.1f} s")
    if args.gallery and rows:
        print(f"gallery: {_gallery(out, rows, captions)}")
    return 0
