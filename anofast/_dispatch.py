"""One registry of op implementations, and the rule that picks one.

``auto`` takes, for a CPU tensor, ``cpp`` then ``reference``; for a CUDA tensor, ``triton`` then
``reference``. ``ANOFAST_BACKEND=reference|cpp|triton`` overrides ``auto``. An explicitly requested
backend that cannot run raises :class:`BackendUnavailableError` with the reason: never a silent fallback.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Literal

import torch

from anofast._backend import (
    BackendUnavailableError,
    cpp_available,
    triton_available,
    triton_interpreted,
    unavailable_reason,
)

Backend = Literal["auto", "reference", "cpp", "triton"]
BACKENDS = ("reference", "cpp", "triton")

_LOADERS: dict[str, dict[str, Callable[[], Callable]]] = {}
_AUTO_ORDER = {"cpu": ("cpp", "reference"), "cuda": ("triton", "reference")}
_warned: set[str] = set()


def register_impl(op: str, backend: str) -> Callable[[Callable[[], Callable]], Callable[[], Callable]]:
    """Decorates a zero-argument *loader* that imports and returns ``op``'s implementation for ``backend``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")

    def deco(loader: Callable[[], Callable]) -> Callable[[], Callable]:
        _LOADERS.setdefault(op, {})[backend] = loader
        return loader

    return deco


def implemented(op: str) -> tuple[str, ...]:
    """Backends that have an implementation of ``op`` (usable here or not)."""
    return tuple(b for b in BACKENDS if b in _LOADERS.get(op, {}))


def usable(backend: str, device: torch.device) -> tuple[bool, str]:
    """Whether ``backend`` can run on ``device`` here, and if not, why."""
    if backend == "reference":
        return device.type != "cuda" or torch.cuda.is_available(), "CUDA is not available"
    if backend == "cpp":
        if device.type != "cpu":
            return False, f"the cpp backend needs CPU tensors, got device {device}"
        return cpp_available(), unavailable_reason("cpp")
    if backend == "triton":
        if not (device.type == "cuda" or (device.type == "cpu" and triton_interpreted())):
            return False, f"the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU), got {device}"
        return triton_available(), unavailable_reason("triton")
    return False, f"unknown backend {backend!r}; expected one of auto, {', '.join(BACKENDS)}"


def resolve(op: str, device: torch.device, backend: str = "auto") -> str:
    """The backend name ``dispatch`` would use."""
    if op not in _LOADERS:
        raise KeyError(f"no op named {op!r} is registered")
    if backend == "auto":
        backend = os.environ.get("ANOFAST_BACKEND", "auto") or "auto"
    if backend == "auto":
        for name in _AUTO_ORDER.get(device.type, ("reference",)):
            if name in _LOADERS[op] and usable(name, device)[0]:
                if name == "reference" and device.type == "cpu" and "cpp" in _LOADERS[op] and op not in _warned:
                    _warned.add(op)
                    warnings.warn(
                        f"anofast: {op} falls back to the slow reference backend: {unavailable_reason('cpp')}",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                return name
        raise BackendUnavailableError("auto", f"no backend of {op} can run on {device}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of auto, {', '.join(BACKENDS)}; got {backend!r}")
    if backend not in _LOADERS[op]:
        raise BackendUnavailableError(backend, f"{op} has no {backend} implementation")
    ok, why = usable(backend, device)
    if not ok:
        raise BackendUnavailableError(backend, why)
    return backend


def dispatch(op: str, device: torch.device, backend: str = "auto") -> Callable:
    """Returns the implementation of ``op`` for tensors on ``device``."""
    return _LOADERS[op][resolve(op, device, backend)]()


def num_threads() -> int:
    """Thread count for the C++ kernels: torch's own setting (1 inside DataLoader workers)."""
    return max(1, torch.get_num_threads())
