"""``FewShotInpainter``: a small pixel-space inpainting DDPM trained on crops around a few real defects (§7.11).

The U-Net sees ``[x_t, mask, (1 - mask) * context]`` (the context is the clean image outside the mask) and a
defect-type embedding with an extra null class for classifier-free guidance. Training samples crops centred on
defect pixels with heavy augmentation (scale, rotation, flips, 90° turns, brightness / contrast), weights the loss
``x (1 + mask_weight)`` inside the mask, keeps an EMA of the weights and writes resumable safetensors checkpoints.
Generation crops a window around each placement mask, runs the fused few-step sampler there and pastes the result
back: the image is bit-identical outside the mask and the returned mask is exactly the changed pixels.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anofast import _rng
from anofast._rng import Stream
from anofast._validate import check_images, check_mask
from anofast.diffusion.inpaint import inpaint
from anofast.diffusion.schedule import NoiseSchedule
from anofast.ops.rng import rng_uniform
from anofast.types import AnomalyBatch


# ------------------------------------------------------------------------------------------------------ network
def _timestep_embedding(t: Tensor, dim: int) -> Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    arg = t.to(torch.float32)[:, None] * freqs[None]
    return torch.cat((arg.sin(), arg.cos()), dim=1)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2 = nn.GroupNorm(8, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class TinyUNet(nn.Module):
    """A small U-Net: ``levels`` resolutions (one residual block each way), time + class embedding.

    Args:
        channels: image channels ``C``; the input has ``2C + 1`` (x_t, mask, masked context).
        base: channels at full resolution; ``mults`` multiply it per level.
        num_classes: defect types; index ``num_classes`` is the null class (guidance).
    """

    def __init__(self, channels: int = 1, base: int = 32, mults: Sequence[int] = (1, 2, 2), num_classes: int = 1):
        super().__init__()
        emb = base * 4
        self.base = base
        self.time = nn.Sequential(nn.Linear(base, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.classes = nn.Embedding(num_classes + 1, emb)
        self.inp = nn.Conv2d(2 * channels + 1, base, 3, padding=1)
        widths = [base * m for m in mults]
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        c = base
        for i, w in enumerate(widths):
            self.down.append(_ResBlock(c, w, emb))
            self.pool.append(nn.Conv2d(w, w, 3, stride=2, padding=1) if i + 1 < len(widths) else nn.Identity())
            c = w
        self.mid = nn.ModuleList([_ResBlock(c, c, emb), _ResBlock(c, c, emb)])
        self.up = nn.ModuleList()
        for w in reversed(widths):
            self.up.append(_ResBlock(c + w, w, emb))
            c = w
        self.out = nn.Sequential(nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: Tensor, t: Tensor, cls: Tensor, mask: Tensor, context: Tensor) -> Tensor:
        emb = self.time(_timestep_embedding(t, self.base)) + self.classes(cls)
        h = self.inp(torch.cat((x, mask, context), dim=1))
        skips = []
        for block, pool in zip(self.down, self.pool, strict=True):
            h = block(h, emb)
            skips.append(h)
            h = pool(h)
        for block in self.mid:
            h = block(h, emb)
        for block in self.up:
            s = skips.pop()
            if h.shape[-1] != s.shape[-1]:
                h = F.interpolate(h, size=s.shape[-2:], mode="nearest")
            h = block(torch.cat((h, s), dim=1), emb)
        return self.out(h)


# ------------------------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class FewShotConfig:
    """Model and training settings stored in every checkpoint."""

    channels: int = 1
    num_classes: int = 1
    base: int = 16
    mults: tuple[int, ...] = (1, 2, 4, 4)
    crop: int = 64
    num_train_steps: int = 1000
    lr: float = 5e-4
    batch_size: int = 8
    mask_weight: float = 4.0
    label_dropout: float = 0.15
    ema: float = 0.999
    scale_range: tuple[float, float] = (0.6, 1.6)
    max_rotation: float = 20.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FewShotConfig:
        d = json.loads(text)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class FewShotInpainter:
    """A few-shot defect inpainting model: ``fit`` on real defects, then ``__call__`` on normal images.

    Args:
        class_names: the defect types (their order defines the class indices); one name for a single type.
        channels: image channels (1 grey, 3 RGB).
        crop: training crop size (64 on a CPU).
        base, mults: U-Net width and levels.
        **train: other :class:`FewShotConfig` fields (lr, batch_size, mask_weight, label_dropout, ema, ...).

    Example:
        >>> model = FewShotInpainter(["scratch"], channels=1, base=8, mults=(1, 1))
        >>> model.num_params() > 0
        True
    """

    def __init__(
        self,
        class_names: Sequence[str] = ("defect",),
        *,
        channels: int = 1,
        crop: int = 64,
        base: int = 16,
        mults: Sequence[int] = (1, 2, 4, 4),
        seed: int = 0,
        **train: Any,
    ):
        names = [str(n) for n in class_names]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"class_names must be non-empty and unique, got {names!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        if not isinstance(crop, int) or crop < 16 or crop % 2 ** (len(mults) - 1):
            raise ValueError(f"crop must be an int >= 16 divisible by {2 ** (len(mults) - 1)}, got {crop!r}")
        self.class_names = names
        self.config = FewShotConfig(
            channels=channels, num_classes=len(names), base=base, mults=tuple(mults), crop=crop, **train
        )
        self.schedule = NoiseSchedule.linear(self.config.num_train_steps)
        self.seed = seed
        self._build(seed)
        self.step = 0

    def _build(self, seed: int) -> None:
        c = self.config
        with torch.random.fork_rng(devices=[]):  # the initial weights depend on the seed only
            torch.manual_seed(seed)
            self.net = TinyUNet(c.channels, c.base, c.mults, c.num_classes)
        self.ema = TinyUNet(c.channels, c.base, c.mults, c.num_classes)
        self.ema.load_state_dict(self.net.state_dict())
        self.ema.requires_grad_(False).eval()
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=c.lr, weight_decay=0.0)

    def to(self, device: torch.device | str) -> FewShotInpainter:
        """Moves the networks (and so generation; e.g. to a CUDA device, where the step runs in Triton)."""
        self.net.to(device)
        self.ema.to(device)
        return self

    def num_params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    # ------------------------------------------------------------------------------------------------ training
    def fit(
        self,
        defect_images: Sequence[Tensor] | Tensor,
        defect_masks: Sequence[Tensor] | Tensor,
        labels: Sequence[int | str] | Tensor | None = None,
        *,
        steps: int = 3000,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 250,
        resume: bool = True,
        time_limit: float | None = None,
        progress: bool = True,
        callback: Callable[[int, float], None] | None = None,
    ) -> FewShotInpainter:
        """Trains until ``self.step == steps`` (continuing from ``checkpoint`` if it exists and ``resume``).

        Args:
            defect_images: images with defects: ``(N, C, H, W)`` or a list of ``(C, H, W)`` of any sizes, float in
                [0, 1] or uint8.
            defect_masks: their defect masks ``(1, H, W)`` / ``(H, W)`` (images with an empty mask are skipped).
            labels: defect type per image (index or name in ``class_names``); default all 0.
            steps: total optimisation steps (batches of ``batch_size`` crops).
            checkpoint: safetensors path written every ``checkpoint_every`` steps and at the end (atomically).
            resume: continue from ``checkpoint`` when it exists (a killed fit loses at most ``checkpoint_every``).
            time_limit: stop (and checkpoint) after this many seconds.
            progress: show a tqdm progress bar.
            callback: ``callback(step, loss)`` after every step.

        The batch of step ``k`` is drawn from a generator seeded by ``(seed, k)`` only, so a resumed run sees the same
        data as an uninterrupted one.
        """
        from tqdm.auto import tqdm

        data = self._prepare(defect_images, defect_masks, labels)
        if checkpoint is not None and resume and Path(checkpoint).exists():
            self.load_state(checkpoint)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {steps!r}")
        start = time.monotonic()
        self.net.train()
        bar = tqdm(total=steps, initial=min(self.step, steps), disable=not progress, desc="FewShotInpainter.fit")
        try:
            while self.step < steps:
                loss = self._train_step(data)
                self.step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                if callback is not None:
                    callback(self.step, loss)
                if checkpoint is not None and self.step % checkpoint_every == 0:
                    self.save(checkpoint)
                if time_limit is not None and time.monotonic() - start > time_limit:
                    break
        finally:
            bar.close()
            self.net.eval()
        if checkpoint is not None:
            self.save(checkpoint)
        return self

    def _prepare(self, images, masks, labels) -> list[tuple[Tensor, Tensor, int, Tensor]]:
        imgs = list(images) if not isinstance(images, Tensor) or images.dim() == 4 else [images]
        msks = list(masks) if not isinstance(masks, Tensor) or masks.dim() == 4 else [masks]
        if len(imgs) != len(msks) or not imgs:
            raise ValueError(f"defect_images and defect_masks must be non-empty and equally long, got "
                             f"{len(imgs)} and {len(msks)}")  # fmt: skip
        if labels is None:
            labels = [0] * len(imgs)
        labels = labels.tolist() if isinstance(labels, Tensor) else list(labels)
        if len(labels) != len(imgs):
            raise ValueError(f"labels must have one entry per image ({len(imgs)}), got {len(labels)}")
        out = []
        for i, (im, m, lab) in enumerate(zip(imgs, msks, labels, strict=True)):
            x = check_images(im.unsqueeze(0) if isinstance(im, Tensor) and im.dim() == 3 else im,
                             f"defect_images[{i}]", (self.config.channels,))  # fmt: skip
            mm = check_mask(m.reshape(1, 1, *m.shape[-2:]) if isinstance(m, Tensor) else m, f"defect_masks[{i}]", x)
            idx = self._class_index(lab)
            where = mm[0, 0].nonzero()
            if where.numel():
                out.append((x[0], mm[0], idx, where))
        if not out:
            raise ValueError("defect_masks are all empty: nothing to train on")
        return out

    def _class_index(self, label: int | str) -> int:
        if isinstance(label, str):
            if label not in self.class_names:
                raise ValueError(f"unknown defect type {label!r}; expected one of {self.class_names}")
            return self.class_names.index(label)
        if not 0 <= int(label) < len(self.class_names):
            raise ValueError(f"defect type index {label!r} is out of range [0, {len(self.class_names)})")
        return int(label)

    def _batch(self, data, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """A batch of augmented crops ``(x0 in [-1, 1], mask, class)`` centred near defect pixels."""
        c = self.config
        xs, ms, cls = [], [], []
        for _ in range(c.batch_size):
            image, mask, label, where = data[int(torch.randint(len(data), (1,), generator=gen))]
            cy, cx = where[int(torch.randint(len(where), (1,), generator=gen))].tolist()
            u = torch.rand(8, generator=gen).tolist()
            lo, hi = c.scale_range
            scale = math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u[0])
            angle = math.radians(c.max_rotation * (2 * u[1] - 1))
            h, w = image.shape[-2:]
            half = c.crop * scale / 2
            cy, cx = cy + (u[2] - 0.5) * half, cx + (u[3] - 0.5) * half
            # affine_grid maps output [-1, 1] to input normalised coordinates (align_corners=False)
            cos, sin = math.cos(angle), math.sin(angle)
            theta = torch.tensor([[cos * half / (w / 2), -sin * half / (w / 2), (2 * cx + 1) / w - 1],
                                  [sin * half / (h / 2), cos * half / (h / 2), (2 * cy + 1) / h - 1]])  # fmt: skip
            grid = F.affine_grid(theta[None], [1, 1, c.crop, c.crop], align_corners=False)
            both = torch.cat((image, mask))[None]
            crop = F.grid_sample(both, grid, mode="bilinear", padding_mode="reflection", align_corners=False)[0]
            x, m = crop[:-1], (crop[-1:] > 0.5).float()
            k = int(u[4] * 4)
            x, m = torch.rot90(x, k, (1, 2)), torch.rot90(m, k, (1, 2))
            if u[5] < 0.5:
                x, m = x.flip(2), m.flip(2)
            contrast = 0.8 + 0.4 * u[6]
            mean = x.mean()
            x = ((x - mean) * contrast + mean + 0.2 * (u[7] - 0.5)).clamp(0, 1)
            xs.append(x * 2 - 1)
            ms.append(m)
            cls.append(label)
        return torch.stack(xs), torch.stack(ms), torch.tensor(cls)

    def _train_step(self, data) -> float:
        c = self.config
        gen = torch.Generator().manual_seed(int(_rng.sample_seeds(self.seed, 1, self.step)[0]))
        x0, mask, cls = self._batch(data, gen)
        b = x0.shape[0]
        t = torch.randint(c.num_train_steps, (b,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        drop = torch.rand(b, generator=gen) < c.label_dropout
        cls = torch.where(drop, c.num_classes, cls)
        ab = self.schedule.alphas_cumprod[t].to(torch.float32).view(b, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        pred = self.net(xt, t, cls, mask, (1 - mask) * x0)
        loss = ((1 + c.mask_weight * mask) * (pred - eps) ** 2).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        decay = min(c.ema, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for pe, p in zip(self.ema.parameters(), self.net.parameters(), strict=True):
                pe.lerp_(p, 1 - decay)
        return float(loss.detach())

    # ---------------------------------------------------------------------------------------------- checkpoints
    def save(self, path: str | os.PathLike) -> None:
        """Writes weights, EMA, optimiser state, step and config to a safetensors file (atomically)."""
        from safetensors.torch import save_file

        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        tensors |= {f"ema.{k}": v for k, v in self.ema.state_dict().items()}
        for i, st in self.opt.state_dict()["state"].items():
            tensors |= {f"opt.{i}.{k}": torch.as_tensor(v) for k, v in st.items()}
        meta = {"config": self.config.to_json(), "class_names": json.dumps(self.class_names), "step": str(self.step),
                "seed": str(self.seed), "format": "anofast.FewShotInpainter/1"}  # fmt: skip
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FewShotInpainter:
        """A model from a checkpoint written by :meth:`save` (ready to generate or to continue training)."""
        meta = _read_meta(path)
        config = FewShotConfig.from_json(meta["config"])
        d = asdict(config)
        model = cls(json.loads(meta["class_names"]), seed=int(meta["seed"]),
                    **{k: v for k, v in d.items() if k != "num_classes"})  # fmt: skip
        model.load_state(path)
        return model

    def load_state(self, path: str | os.PathLike) -> None:
        """Loads a checkpoint of the same configuration into this model (weights, EMA, optimiser, step)."""
        from safetensors.torch import load_file

        meta = _read_meta(path)
        same = FewShotConfig.from_json(meta["config"]) == self.config
        if not same or json.loads(meta["class_names"]) != self.class_names:
            raise ValueError(f"checkpoint {path} was written with another configuration or class_names")
        tensors = load_file(str(path))
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        opt = self.opt.state_dict()
        state: dict[int, dict[str, Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                state.setdefault(int(i), {})[name] = v
        opt["state"] = state
        self.opt.load_state_dict(opt)
        self.step = int(meta["step"])
        self.seed = int(meta["seed"])

    # ----------------------------------------------------------------------------------------------- generation
    def model_fn(self, x: Tensor, t: Tensor, cond: dict[str, Tensor]) -> Tensor:
        """The EMA network as a sampler model: ``cond`` holds ``class``, ``mask`` and ``context``."""
        return self.ema(x, t, cond["class"], cond["mask"], cond["context"])

    def __call__(
        self,
        normal_images: Tensor,
        masks: Tensor,
        seed: int | Tensor | None = None,
        *,
        defect_type: int | str | Tensor | None = None,
        steps: int = 20,
        sampler: str = "dpmpp2m",
        guidance: float = 1.5,
        strength: float = 1.0,
        backend: str = "auto",
    ) -> AnomalyBatch:
        """Generates defects inside ``masks`` on ``normal_images``.

        Args:
            normal_images: ``(B, C, H, W)`` float in [0, 1] or uint8 (``C`` as trained), ``H, W >= 16``.
            masks: ``(B, 1, H, W)`` placement masks.
            seed: int, ``(B,)`` int64 per-sample seeds or None.
            defect_type: class index or name for all samples, a ``(B,)`` tensor of indices, or None (drawn per
                sample from ``Stream.DIFFUSION_SCALAR``).
            steps, sampler, guidance, strength, backend: as :func:`anofast.diffusion.inpaint`.

        Returns:
            :class:`~anofast.AnomalyBatch` (image bit-identical outside the mask; mask = the changed pixels).
        """
        images = check_images(normal_images, "normal_images", (self.config.channels,))
        mask = check_mask(masks, "masks", images)
        batch, _, height, width = images.shape
        if min(height, width) < 16:
            raise ValueError(f"normal_images must be at least 16 x 16, got {height} x {width}")
        seeds = _rng.resolve_seeds(seed, batch)
        cls = self._defect_types(defect_type, seeds)
        y0, x0, size = _windows(mask, self.config.crop, 2 ** (len(self.config.mults) - 1))
        crops = torch.stack([images[b, :, y0[b] : y0[b] + size, x0[b] : x0[b] + size] for b in range(batch)])
        mcrops = torch.stack([mask[b, :, y0[b] : y0[b] + size, x0[b] : x0[b] + size] for b in range(batch)])
        context = (1 - mcrops) * (crops * 2 - 1)
        cond = {"class": cls.to(images.device), "mask": mcrops, "context": context}
        if next(self.ema.parameters()).device != images.device:
            raise ValueError(f"normal_images are on {images.device} but the model is on "
                             f"{next(self.ema.parameters()).device}; use .to(device)")  # fmt: skip
        null = {**cond, "class": torch.full_like(cond["class"], self.config.num_classes)}
        out = inpaint(
            self.model_fn, crops, mcrops, schedule=self.schedule, steps=steps, sampler=sampler, seed=seeds,
            guidance=guidance, cond=cond, null_cond=null, strength=strength, clip=1.0, backend=backend,
        )  # fmt: skip
        image, changed = images.clone(), torch.zeros_like(mask)
        for b in range(batch):
            image[b, :, y0[b] : y0[b] + size, x0[b] : x0[b] + size] = out.image[b]
            changed[b, :, y0[b] : y0[b] + size, x0[b] : x0[b] + size] = out.mask[b]
        window = torch.tensor([[y, x, size] for y, x in zip(y0, x0, strict=True)], dtype=torch.int64)
        params = {**out.params, "defect_type": cls.cpu(), "window": window}
        return AnomalyBatch(image=image, mask=changed, label=out.label, params=params)

    def _defect_types(self, defect_type, seeds: Tensor) -> Tensor:
        batch = seeds.shape[0]
        if defect_type is None:
            u = rng_uniform(seeds, Stream.DIFFUSION_SCALAR, 1)[:, 0]
            return (u * len(self.class_names)).long().clamp(max=len(self.class_names) - 1)
        if isinstance(defect_type, Tensor):
            if defect_type.shape != (batch,):
                raise ValueError(f"defect_type must have shape ({batch},), got {tuple(defect_type.shape)}")
            return torch.tensor([self._class_index(int(v)) for v in defect_type.tolist()], dtype=torch.int64)
        return torch.full((batch,), self._class_index(defect_type), dtype=torch.int64)


def _read_meta(path: str | os.PathLike) -> dict[str, str]:
    from safetensors import safe_open

    if not Path(path).is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise ValueError(f"checkpoint {path} is not a readable safetensors file ({exc})") from None
    if meta.get("format") != "anofast.FewShotInpainter/1":
        raise ValueError(f"checkpoint {path} is not a FewShotInpainter checkpoint")
    return meta


def _windows(mask: Tensor, crop: int, multiple: int) -> tuple[list[int], list[int], int]:
    """Square windows (one size for the batch) covering each mask's box with a margin, inside the image."""
    batch, _, height, width = mask.shape
    boxes = []
    for b in range(batch):
        ys, xs = mask[b, 0].nonzero(as_tuple=True)
        boxes.append((int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1) if ys.numel() else None)
    extent = max([max(y1 - y0, x1 - x0) for y0, x0, y1, x1 in filter(None, boxes)], default=0)
    size = max(crop, -(-(extent + crop // 4) // multiple) * multiple)
    size = min(size, (min(height, width) // multiple) * multiple)
    y0s, x0s = [], []
    for box in boxes:
        cy, cx = ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2) if box else (height // 2, width // 2)
        y0s.append(min(max(cy - size // 2, 0), height - size))
        x0s.append(min(max(cx - size // 2, 0), width - size))
    return y0s, x0s, size
