"""Lazy, cached probes for the native backends. Importing anofast triggers none of them."""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run here; the message says why."""

    def __init__(self, backend: str, reason: str):
        super().__init__(f"backend {backend!r} is unavailable: {reason}")
        self.backend = backend
        self.reason = reason


@functools.cache
def _load_cpp() -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module("anofast._C"), ""
    except ImportError as exc:  # built with ANOFAST_NO_EXTENSION=1, or a broken build
        return None, f"the C++ extension anofast._C could not be imported ({exc})"


@functools.cache
def _load_triton() -> tuple[bool, str]:
    try:
        importlib.import_module("triton")
        importlib.import_module("anofast._kernels")
        return True, ""
    except ImportError as exc:
        return False, f"triton could not be imported ({exc}); install it with `pip install anofast[triton]`"


def cpp_available() -> bool:
    """True if the C++ extension ``anofast._C`` imports."""
    return _load_cpp()[0] is not None


def cpp_module() -> ModuleType:
    """The C++ extension module; raises :class:`BackendUnavailableError` if it is missing."""
    module, why = _load_cpp()
    if module is None:
        raise BackendUnavailableError("cpp", why)
    return module


def triton_available() -> bool:
    """True if triton and ``anofast._kernels`` import."""
    return _load_triton()[0]


def triton_interpreted() -> bool:
    """True when Triton kernels run on the CPU through the interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def unavailable_reason(backend: str) -> str:
    """Why a backend cannot be loaded ('' if it can)."""
    if backend == "cpp":
        return _load_cpp()[1]
    if backend == "triton":
        return _load_triton()[1]
    return ""
