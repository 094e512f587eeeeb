"""The ``anofast`` command line.

``anofast demo`` makes anomalies on built-in surfaces and writes a gallery; ``anofast generate`` makes a
synthetic-anomaly data set from a folder of normal images, resumably. Every file is written atomically, and
sample ``k`` depends only on ``(seed, k)``: a resumed run is byte-identical to an uninterrupted one.

Problems the user can fix are printed as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import anofast
from anofast._rng import sample_seeds
from anofast.data.folder import (
    ImageReadError,
    atomic_write_bytes,
    encode_png,
    list_images,
    read_image,
    to_uint8,
)
from anofast.synth.nsa import MVTEC_CLASSES

MANIFEST = "manifest.jsonl"
RUN_JSON = "run.json"
PNG_LEVEL = 1  # zlib level of output PNGs: ~4x faster to encode than PIL's default 6, files ~15 % larger
GALLERY_SAMPLES = 16
# run.json keys a resumed run may change: they do not affect any output byte.
_RESUME_FREE = ("count", "batch_size", "input")


class CLIError(Exception):
    """A problem the user can fix: printed as one line on stderr, exit code 2."""


# ------------------------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class Method:
    """A generator family ``generate --method`` can run.

    Attributes:
        summary: one line for ``--help``.
        presets: preset names; the first is the default.
        build: ``build(preset, source, overrides) -> generator``; the generator is called as
            ``generator(images_uint8, seed=per_sample_seeds)`` and has ``config() -> dict``.
        generate: for families whose inputs are not images (3D): ``generate(args) -> exit code`` runs the whole
            ``generate`` command instead of the image pipeline (such a family cannot be mixed with others).
    """

    summary: str
    presets: tuple[str, ...]
    build: Callable[[str, str | None, dict[str, Any]], Any]
    generate: Callable[[argparse.Namespace], int] | None = None


def _build_perlin(preset: str, source: str | None, overrides: dict[str, Any]) -> Any:
    from anofast.synth.perlin import PerlinAnomaly

    return getattr(PerlinAnomaly, preset)(source=source, **overrides)


METHODS: dict[str, Method] = {
    "perlin": Method(
        summary="Perlin-noise masks filled with augmented textures (DRAEM, anomalib, GLASS)",
        presets=("draem", "anomalib", "glass"),
        build=_build_perlin,
    ),
    "cutpaste": Method(
        summary="CutPaste: a jittered crop of the image pasted elsewhere (normal, scar, union, 3-way)",
        presets=("normal", "scar", "three_way", "union"),
        build=lambda preset, source, overrides: _build_cutpaste(preset, source, overrides),
    ),
    "nsa": Method(
        summary="NSA: patches of another image, resized, shifted and Poisson-blended (normal / mixed gradients)",
        # mvtec_<class>: NSA's train_mvtec.py settings of that MVTec AD class (with its object masks)
        presets=("nsa", "nsa_mixed", "nsa_texture", "shift", *(f"mvtec_{c}" for c in MVTEC_CLASSES)),
        build=lambda preset, source, overrides: _build_nsa(preset, source, overrides),
    ),
    "pointcloud": Method(
        summary="point clouds (.pcd/.ply/.npz folder): bulges, dents, holes, cuts, debris with per-point labels",
        presets=("default", "surface", "missing"),
        build=lambda *_: _not_mixable("pointcloud"),
        generate=lambda args: _three_d_generate("pointcloud", args),
    ),
    "depth": Method(
        summary="RGB-D (MVTec 3D-AD rgb/ + xyz/ folder): depth-consistent bulges, dents, grooves, holes",
        presets=("default",),
        build=lambda *_: _not_mixable("depth"),
        generate=lambda args: _three_d_generate("depth", args),
    ),
}


def _build_cutpaste(preset: str, source: str | None, overrides: dict[str, Any]) -> Any:
    """CutPaste's anomaly source is the image itself: ``--source`` does not apply."""
    from anofast.synth.cutpaste import CutPaste

    if source is not None and source != "self":
        raise CLIError("--source does not apply to --method cutpaste (it pastes a crop of the image itself)")
    return getattr(CutPaste, preset)(**overrides)


def _build_nsa(preset: str, source: str | None, overrides: dict[str, Any]) -> Any:
    """NSA takes patches from the other images of each batch (or from --source, a folder of normal images); a
    batch of one image (a last batch, an image of its own size) uses the image itself as the source."""
    from anofast.synth.nsa import NaturalSynthetic

    pool = None
    if source is not None:
        if source == "self":
            raise CLIError("--source self is not an NSA source; pass a folder of normal images or nothing")
        from anofast.data.textures import load_texture_folder

        pool = load_texture_folder(source, (256, 256))
    if preset.startswith("mvtec_"):
        return NaturalSynthetic.nsa_mvtec(preset[len("mvtec_"):], source=pool, **{"allow_self": True, **overrides})
    return getattr(NaturalSynthetic, preset)(source=pool, **{"allow_self": True, **overrides})


def _not_mixable(name: str) -> Any:
    raise CLIError(f"--method: {name} reads 3D inputs and cannot be mixed with image methods")


def _three_d_generate(name: str, args: argparse.Namespace) -> int:
    from anofast.three_d import generate

    return generate.generate_pointcloud(args) if name == "pointcloud" else generate.generate_depth(args)


def build_generator(spec: str, preset: str | None, source: str | None, weights: Sequence[float] | None = None,
                    p_normal: float = 0.0) -> tuple[Any, str | None]:
    """The generator of ``generate --method SPEC``: one family, or an :class:`anofast.OneOf` mix.

    ``SPEC`` is ``name[:preset][,name[:preset]...]`` (e.g. ``perlin:glass,cutpaste``); ``preset`` (``--preset``)
    applies to entries without one. A single entry without ``weights`` / ``p_normal`` is the family's generator
    itself. Returns the generator and the preset to record (None for a mix).

    Raises:
        CLIError: an unknown family or preset, a repeated entry, or weights that do not match the entries.
    """
    entries: list[tuple[str, str]] = []
    for item in spec.split(","):
        name, _, own = item.strip().partition(":")
        if name not in METHODS:
            raise CLIError(f"--method: unknown family {name!r} (one of {', '.join(sorted(METHODS))})")
        chosen = own or preset or METHODS[name].presets[0]
        if chosen not in METHODS[name].presets:
            where = f"--method {item.strip()}: preset" if own else "--preset"
            raise CLIError(f"{where} {chosen!r} is not a preset of --method {name} (one of {METHODS[name].presets})")
        if (name, chosen) in entries:
            raise CLIError(f"--method: {name}:{chosen} is listed twice")
        entries.append((name, chosen))
    if weights is not None and len(weights) != len(entries):
        raise CLIError(f"--weights has {len(weights)} values but --method lists {len(entries)} families")
    gens = [METHODS[name].build(chosen, source, {}) for name, chosen in entries]
    if len(gens) == 1 and weights is None and p_normal == 0.0:
        return gens[0], entries[0][1]
    from anofast.synth.compose import OneOf

    try:
        mix = OneOf(gens, weights=weights, p_normal=p_normal, names=[f"{n}:{p}" for n, p in entries])
    except ValueError as e:
        raise CLIError(f"--weights/--p-normal: {e}") from None
    return mix, None


def _foreground_source(spec: str, inputs: Sequence[Any]) -> Callable[[Tensor, list[int]], Tensor] | None:
    """``--foreground``: None for ``none``; ``auto`` = :func:`anofast.foreground.estimate`; else a folder of masks
    named like the inputs (same relative path and stem, optional ``_mask`` suffix), resized nearest-neighbour to
    the image. Returns ``fg(images_uint8_batch, input_indices) -> (B, 1, H, W)``.

    Raises:
        CLIError: the folder does not exist, or an input has no mask in it (checked up front).
    """
    if spec == "none":
        return None
    if spec == "auto":
        from anofast.foreground import estimate

        return lambda images, _idx: estimate(images)
    from anofast.data.mvtec import _find_mask, read_mask

    root = Path(spec)
    if not root.is_dir():
        raise CLIError(f"--foreground {spec}: not 'auto', 'none' or a folder of masks")
    files = []
    for inp in inputs:
        rel = Path(inp.name)
        mask = _find_mask(root / rel.parent, rel.stem)
        if mask is None:
            raise CLIError(f"--foreground {spec}: no mask for input {inp.name} (expected {root / rel.parent}/"
                           f"{rel.stem}.png or {rel.stem}_mask.png)")
        files.append(mask)

    def load(images: Tensor, idx: list[int]) -> Tensor:
        size = tuple(images.shape[-2:])
        return torch.stack([read_mask(files[i], size) for i in idx]).to(images.device)

    return load


# ------------------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class _Input:
    """One normal image: a file read on demand, or an in-memory image (the demo's built-ins)."""

    name: str  # the manifest's "source"
    path: Path | None = None
    image: Tensor | None = None

    def load(self, size: tuple[int, int] | None) -> Tensor:
        if self.path is not None:
            return read_image(self.path, size)
        assert self.image is not None
        return self.image


def _folder_inputs(root: Path, recursive: bool) -> list[_Input]:
    return [_Input(f.relative_to(root).as_posix(), path=f) for f in list_images(root, recursive=recursive)]


def _inputs_digest(inputs: Sequence[_Input]) -> str:
    """Identifies the input list (names and byte sizes), so a resume notices a changed folder."""
    h = hashlib.sha256()
    for inp in inputs:
        size = inp.path.stat().st_size if inp.path is not None else int(inp.image.numel())  # type: ignore[union-attr]
        h.update(f"{inp.name}\t{size}\n".encode())
    return "sha256:" + h.hexdigest()


# ------------------------------------------------------------------------------------------------ output
def _f32(x: Any) -> Any:
    """Nested float32 values as the shortest decimal that reads back as the same float32."""
    if isinstance(x, list):
        return [_f32(v) for v in x]
    return float(str(np.float32(x)))


def _json_value(t: Any) -> Any:
    if not isinstance(t, Tensor):
        return t
    if t.is_floating_point():
        return _f32(t.to(torch.float32).tolist())
    return t.tolist()


def _read_manifest(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """Complete entries of a manifest and the byte offset where each one's line ends (a torn last line, from
    an interrupted append, is ignored).

    Raises:
        CLIError: a complete line is not valid JSON, or indices are not 0, 1, 2, ... in order.
    """
    if not path.exists():
        return [], []
    lines = path.read_bytes().split(b"\n")
    entries: list[dict[str, Any]] = []
    ends: list[int] = []
    for number, line in enumerate(lines[:-1], start=1):  # lines[-1] is b"" or a torn line without newline
        try:
            entry = json.loads(line)
        except ValueError:
            raise CLIError(f"{path} line {number} is not valid JSON; this manifest cannot be resumed") from None
        if not isinstance(entry, dict) or entry.get("index") != len(entries):
            raise CLIError(f"{path} line {number}: expected sample index {len(entries)}; cannot resume")
        entries.append(entry)
        ends.append((ends[-1] if ends else 0) + len(line) + 1)
    return entries, ends


def _complete(out: Path, entries: list[dict[str, Any]]) -> int:
    """How many leading entries have all their files (after a power cut a listed file may be missing)."""
    for i, e in enumerate(entries):
        if not all((out / e[key]).is_file() for key in ("image", "mask", "original") if key in e):
            return i
    return len(entries)


def _remove_stale_temps(out: Path) -> None:
    """Temporary files left by an interrupted atomic write (named ``.<file>.<pid>.<hex>.tmp``)."""
    for folder in (out, out / "images", out / "masks", out / "originals", out / "overlays"):
        if folder.is_dir():
            for f in folder.glob(".*.tmp"):
                f.unlink(missing_ok=True)


def _describe_os_error(e: OSError) -> str:
    if e.strerror and e.filename:
        return f"{e.strerror}: {e.filename}"
    return str(e)


def _prepare_output(out: Path, run: dict[str, Any], resume: bool) -> int:
    """Checks the output folder against ``run`` (the new run.json); returns how many samples are done.

    Creates the folders, writes ``run.json`` and truncates a torn manifest tail.

    Raises:
        CLIError: the folder is not writable, holds another run (without ``--resume``), or a run made with
            other settings (with ``--resume``).
    """
    if out.exists() and not out.is_dir():
        raise CLIError(f"output {out} exists and is not a folder")
    manifest = out / MANIFEST
    old_path = out / RUN_JSON
    done = end = 0
    if manifest.exists() or old_path.exists():
        if not resume:
            raise CLIError(
                f"output folder {out} already holds a run ({MANIFEST}); pass --resume to continue it "
                f"or choose another --output"
            )
        try:
            old = json.loads(old_path.read_text())
        except (OSError, ValueError):
            raise CLIError(f"cannot resume: {old_path} is missing or unreadable") from None
        diffs = [
            f"{k}: {old.get(k)!r} -> {run.get(k)!r}"
            for k in sorted(set(old) | set(run))
            if k not in _RESUME_FREE and old.get(k) != run.get(k)
        ]
        if diffs:
            raise CLIError(
                f"cannot resume {out}: it was made with other settings ({'; '.join(diffs)}); "
                f"use the same arguments or choose another --output"
            )
        entries, ends = _read_manifest(manifest)
        done = _complete(out, entries)
        end = ends[done - 1] if done else 0
        if done < len(entries):
            print(f"anofast: {out / MANIFEST} lists sample {done} but its files are missing; redoing it and the "
                  f"{len(entries) - done - 1} after it", file=sys.stderr)
        if done > run["count"]:
            raise CLIError(f"output {out} already holds {done} samples, more than --count {run['count']}")
    try:
        for sub in ("images", "masks"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(out)
        if manifest.exists() and manifest.stat().st_size != end:
            os.truncate(manifest, end)  # drop a torn line (or entries whose files are gone) before appending
        atomic_write_bytes(old_path, (json.dumps(run, indent=2) + "\n").encode(), fsync=True)
    except OSError as e:
        raise CLIError(f"cannot write to output folder {out}: {_describe_os_error(e)}") from None
    return done


def _produce(
    out: Path,
    generator: Any,
    inputs: Sequence[_Input],
    *,
    seed: int,
    count: int,
    start: int,
    batch_size: int,
    size: tuple[int, int] | None,
    write_originals: bool,
    desc: str,
    foreground: Callable[[Tensor, list[int]], Tensor] | None = None,
) -> None:
    """Generates samples ``start .. count-1`` in batches; sample ``k`` uses input ``k % len(inputs)``.

    Per batch: decode inputs (threads, one batch ahead), run the generator per group of equally sized images
    with the samples' own seeds, write the PNGs atomically (threads), then append the batch's manifest lines
    and flush + fsync them, so the manifest only ever names files that are complete on disk.
    """
    from tqdm import tqdm

    workers = min(8, os.cpu_count() or 1)
    with (
        ThreadPoolExecutor(workers) as pool,
        open(out / MANIFEST, "ab") as manifest,
        tqdm(total=count, initial=start, unit="img", desc=desc, disable=None) as bar,
    ):

        def submit(b0: int) -> list[Future]:
            return [pool.submit(inputs[k % len(inputs)].load, size) for k in range(b0, min(count, b0 + batch_size))]

        loading = submit(start)
        for b0 in range(start, count, batch_size):
            idx = list(range(b0, min(count, b0 + batch_size)))
            images = [f.result() for f in loading]
            loading = submit(b0 + batch_size)  # decode the next batch while this one is generated
            seeds = sample_seeds(seed, len(idx), b0)
            groups: dict[tuple[int, ...], list[int]] = {}
            for j, im in enumerate(images):
                groups.setdefault(tuple(im.shape), []).append(j)
            # All torch work happens here, batched; writer threads only encode PNGs (PIL / zlib release the GIL).
            results: list[Any] = [None] * len(idx)  # (image, mask, label, mask pixels, params) per sample
            for pos in groups.values():
                batch = torch.stack([images[j] for j in pos])
                fg = {} if foreground is None else {"foreground": foreground(batch, [idx[j] % len(inputs) for j in pos])}
                res = generator(batch, seed=seeds[pos], **fg)
                image_hwc = to_uint8(res.image).permute(0, 2, 3, 1).contiguous()
                mask_u8 = to_uint8(res.mask)
                pixels = res.mask.flatten(1).count_nonzero(1).tolist()
                labels = res.label.tolist()
                params = {k: _json_value(v) for k, v in res.params.items()}
                for r, j in enumerate(pos):
                    record = {k: v[r] for k, v in params.items()}
                    results[j] = (image_hwc[r].permute(2, 0, 1), mask_u8[r], labels[r], pixels[r], record)
            originals = [im.permute(1, 2, 0).contiguous().permute(2, 0, 1) for im in images] if write_originals else []

            def write(j: int) -> bytes:
                k = idx[j]
                image, mask, label, pixels, params = results[j]
                name = f"{k:06d}.png"
                # fsync: the manifest line written after this must never name a file a power cut could lose
                atomic_write_bytes(out / "images" / name, encode_png(image, compress_level=PNG_LEVEL), fsync=True)
                atomic_write_bytes(out / "masks" / name, encode_png(mask, compress_level=PNG_LEVEL), fsync=True)
                entry: dict[str, Any] = {
                    "index": k,
                    "image": f"images/{name}",
                    "mask": f"masks/{name}",
                    "source": inputs[k % len(inputs)].name,
                }
                if write_originals:
                    png = encode_png(originals[j], compress_level=PNG_LEVEL)
                    atomic_write_bytes(out / "originals" / name, png, fsync=True)
                    entry["original"] = f"originals/{name}"
                entry.update(
                    seed=int(seeds[j]),
                    label=label,
                    coverage=pixels / (mask.shape[-2] * mask.shape[-1]),
                    mask_pixels=pixels,
                    params=params,
                )
                return (json.dumps(entry) + "\n").encode()

            lines = list(pool.map(write, range(len(idx))))
            manifest.write(b"".join(lines))
            manifest.flush()
            os.fsync(manifest.fileno())
            bar.update(len(idx))


def _gallery(out: Path, origin: Callable[[dict[str, Any]], Path]) -> Path:
    """Gallery of the first samples of the manifest in ``out``; returns the index.html path."""
    from anofast.gallery import write_gallery

    entries = _read_manifest(out / MANIFEST)[0][:GALLERY_SAMPLES]
    captions = [
        f"#{e['index']} {e['source']}  " + (f"anomaly {e['coverage']:.1%}" if e["label"] else "normal")
        for e in entries
    ]
    _, index = write_gallery(
        out,
        [origin(e) for e in entries],
        [out / e["image"] for e in entries],
        [out / e["mask"] for e in entries],
        captions,
    )
    return index


# ------------------------------------------------------------------------------------------------ commands
def _run_config(
    command: str, method: str, preset: str, generator: Any, seed: int, count: int, batch_size: int,
    size: tuple[int, int] | None, inputs: Sequence[_Input], extra: dict[str, Any],
) -> dict[str, Any]:
    run = {
        "anofast_version": anofast.__version__,
        "command": command,
        "method": method,
        "preset": preset,
        "generator": generator.config(),
        "seed": seed,
        "count": count,
        "batch_size": batch_size,
        "size": None if size is None else list(size),
        **extra,
        "input_files": len(inputs),
        "input_digest": _inputs_digest(inputs),
        "png_compress_level": PNG_LEVEL,
    }
    return json.loads(json.dumps(run))  # as it reads back from run.json (lists, not tuples)


def cmd_generate(args: argparse.Namespace) -> int:
    """``anofast generate``: a synthetic-anomaly data set from a folder of normal images."""
    name, _, own = args.method.partition(":")
    if name in METHODS and METHODS[name].generate is not None and "," not in args.method:
        args.preset = own or args.preset
        return METHODS[name].generate(args)  # type: ignore[misc]
    t0 = time.perf_counter()
    root = Path(args.input)
    inputs = _folder_inputs(root, args.recursive)
    source = args.source
    if source is not None and source != "self":
        source = str(Path(source).resolve())
        if not Path(source).is_dir():
            raise CLIError(f"--source {args.source} is not a folder of texture images")
    out = Path(args.output)
    generator, preset = build_generator(args.method, args.preset, source, args.weights, args.p_normal)
    fg_spec = args.foreground if args.foreground in ("auto", "none") else str(Path(args.foreground).resolve())
    foreground = _foreground_source(fg_spec, inputs)
    run = _run_config(
        "generate", args.method, preset, generator, args.seed, args.count or len(inputs), args.batch_size,
        args.size, inputs, {"input": str(root.resolve()), "recursive": args.recursive, "foreground": fg_spec},
    )
    done = _prepare_output(out, run, args.resume)
    count = run["count"]
    if done:
        print(f"anofast generate: resuming {out} at sample {done} of {count}", file=sys.stderr)
    _produce(out, generator, inputs, seed=args.seed, count=count, start=done, batch_size=args.batch_size,
             size=args.size, write_originals=False, desc="generate", foreground=foreground)
    dt = time.perf_counter() - t0
    made = count - done
    print(f"anofast generate: {made} samples written to {out} in {dt:.1f} s ({made / dt:.0f} images/s)"
          + (f", {done} were already there" if done else ""))
    if args.gallery:
        index = _gallery(out, lambda e: root / e["source"])
        print(f"gallery: {index}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``anofast demo``: anomalies on built-in surfaces, with a gallery."""
    from anofast.data.demo import builtin_images

    t0 = time.perf_counter()
    out = Path(args.output)
    images, note = builtin_images(args.size)
    if note:
        print(f"anofast demo: {note}", file=sys.stderr)
    inputs = [_Input(f"builtin:{name}", image=im) for name, im in images]
    # Every sample gets an anomaly here (no normal coin flips, empty masks re-drawn): the gallery shows defects.
    generator = METHODS["perlin"].build(args.preset, None, {"p_anomaly": 1.0, "empty_mask": "retry"})
    run = _run_config("demo", "perlin", args.preset, generator, args.seed, args.count, args.batch_size, args.size,
                      inputs, {})
    _clear_demo(out)
    _prepare_output(out, run, resume=False)
    (out / "originals").mkdir(exist_ok=True)
    _produce(out, generator, inputs, seed=args.seed, count=args.count, start=0, batch_size=args.batch_size,
             size=None, write_originals=True, desc="demo")
    index = _gallery(out, lambda e: out / e["original"])
    dt = time.perf_counter() - t0
    print(f"anofast demo: {args.count} samples ({args.preset} preset) written to {out} in {dt:.1f} s\n"
          f"  open {index} (or {out / 'gallery.png'})")
    return 0


def _clear_demo(out: Path) -> None:
    """Removes a previous demo's files from ``out``; a folder holding any other run is an error."""
    if not (out / MANIFEST).exists() and not (out / RUN_JSON).exists():
        return
    try:
        command = json.loads((out / RUN_JSON).read_text()).get("command")
    except (OSError, ValueError, AttributeError):
        command = None
    if command != "demo":
        raise CLIError(f"output folder {out} holds another run ({MANIFEST}); choose another --output")
    for sub in ("images", "masks", "originals", "overlays"):
        for f in (out / sub).glob("*.png"):
            f.unlink()
    for name in (MANIFEST, RUN_JSON, "gallery.png", "index.html"):
        (out / name).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ parsing
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``anofast generate: error: ...``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_size(text: str) -> tuple[int, int]:
    """``"256"`` -> (256, 256); ``"240x320"`` -> (240, 320) (height x width)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        hw = [int(p) for p in parts]
    except ValueError:
        hw = []
    if len(hw) == 1:
        hw *= 2
    if len(hw) != 2 or min(hw) < 1 or max(hw) > 16384:
        raise argparse.ArgumentTypeError(f"expected HxW (height x width) like 256x256 or 240x320, got {text!r}")
    return hw[0], hw[1]


def _weights(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or any(not (v >= 0.0) or v == float("inf") for v in values) or sum(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected non-negative numbers like 2,1 with a positive sum, got {text!r}")
    return values


def _probability(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return v


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The ``anofast`` argument parser."""
    parser = _Parser(prog="anofast", description="Fast, seeded synthetic anomalies for industrial anomaly detection.")
    parser.add_argument("--version", action="version", version=f"anofast {anofast.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="anomalies on built-in surfaces, with a gallery (no data needed)",
                          description="Makes anomalies on built-in surfaces (procedural, and scikit-image's CC0 "
                          "photographs when installed) and writes images/, masks/, originals/, manifest.jsonl, "
                          "gallery.png and index.html. Every sample gets an anomaly (the preset with p_anomaly=1 and "
                          "empty masks re-drawn).")
    demo.add_argument("--output", default="./anofast-demo", metavar="DIR", help="output folder (default: %(default)s)")
    demo.add_argument("--count", type=_positive, default=16, metavar="N",
                      help="number of samples (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the run (default: %(default)s)")
    demo.add_argument("--preset", choices=METHODS["perlin"].presets, default="draem",
                      help="Perlin preset (default: %(default)s)")
    demo.add_argument("--size", type=parse_size, default=(256, 256), metavar="HxW",
                      help="image size, e.g. 256 or 240x320 (default: 256)")
    demo.add_argument("--batch-size", type=_positive, default=32, help=argparse.SUPPRESS)
    demo.set_defaults(func=cmd_demo)

    methods = "; ".join(f"{name}: {m.summary} (presets {', '.join(m.presets)})" for name, m in METHODS.items())
    gen = sub.add_parser("generate", help="a synthetic-anomaly data set from a folder of normal images",
                         description="Makes N anomalous samples from the images in --input (sample k uses image "
                         "k % n and is keyed by (seed, k)) and writes images/NNNNNN.png, masks/NNNNNN.png, "
                         "manifest.jsonl (one JSON line per sample) and run.json. Interrupted runs continue "
                         "with --resume and give byte-identical files.")
    gen.add_argument("--input", required=True, metavar="DIR", help="folder of normal images")
    gen.add_argument("--output", required=True, metavar="DIR", help="output folder")
    gen.add_argument("--method", default="perlin", metavar="NAME[:PRESET][,...]",
                     help=f"generator family, or a comma-separated mix drawn per sample (anofast.OneOf), e.g. "
                     f"perlin:glass,cutpaste ({methods})")
    gen.add_argument("--weights", type=_weights, metavar="W1,W2,...",
                     help="relative weights of the families of a --method mix (default: equal)")
    gen.add_argument("--p-normal", type=_probability, default=0.0, metavar="P",
                     help="fraction of samples left normal, label 0 (default: 0)")
    gen.add_argument("--foreground", default="none", metavar="auto|none|DIR",
                     help="restrict anomalies to the object: 'auto' (anofast.foreground.estimate; for object "
                     "categories, not textures), a folder of masks named like the inputs, or 'none' (default)")
    gen.add_argument("--preset", help="preset of the method (default: its first, e.g. draem)")
    gen.add_argument("--source", metavar="DIR",
                     help="anomaly-source textures: a folder of images (e.g. DTD), or 'self' (the image itself); "
                     "default: built-in procedural textures")
    gen.add_argument("--count", type=_positive, metavar="N", help="number of samples (default: one per input image)")
    gen.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the run (default: %(default)s)")
    gen.add_argument("--batch-size", type=_positive, default=32, metavar="B",
                     help="images per generator call (default: 32)")
    gen.add_argument("--size", type=parse_size, metavar="HxW",
                     help="resize inputs to HxW, e.g. 256 or 240x320 (default: keep each image's size)")
    gen.add_argument("--recursive", action="store_true", help="also read images in sub-folders of --input")
    gen.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    gen.add_argument("--gallery", action="store_true", help="also write gallery.png and index.html")
    gen.set_defaults(func=cmd_generate)

    from anofast.eval.cli import add_parser as add_eval_parser  # `anofast eval`: the benchmark protocol

    add_eval_parser(sub, _positive)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anofast`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, ImageReadError) as e:
        message = str(e)
    except OSError as e:
        message = _describe_os_error(e)
    except KeyboardInterrupt:
        hint = "; continue with --resume" if args.command == "generate" else ""
        print(f"\nanofast {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    print(f"anofast {args.command}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
