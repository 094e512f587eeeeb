import subprocess
import sys

import pytest
import torch

from anofast import BackendUnavailableError
from anofast._dispatch import dispatch, resolve
from anofast.ops import rng as _rng_op  # noqa: F401  (registers rng_uniform)


def test_import_is_lazy():
    code = "import sys, anofast; print('anofast._C' in sys.modules, 'triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_auto_prefers_cpp_on_cpu(monkeypatch):
    monkeypatch.delenv("ANOFAST_BACKEND", raising=False)
    from anofast._backend import cpp_available

    assert resolve("rng_uniform", torch.device("cpu")) == ("cpp" if cpp_available() else "reference")


def test_env_override(monkeypatch):
    monkeypatch.setenv("ANOFAST_BACKEND", "reference")
    assert resolve("rng_uniform", torch.device("cpu")) == "reference"


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="backend must be one of"):
        dispatch("rng_uniform", torch.device("cpu"), "cuda-magic")


def test_explicit_unusable_backend_raises_with_reason(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendUnavailableError, match="triton"):
        dispatch("rng_uniform", torch.device("cpu"), "triton")


def test_unknown_op():
    with pytest.raises(KeyError, match="no op named"):
        resolve("nope", torch.device("cpu"))
