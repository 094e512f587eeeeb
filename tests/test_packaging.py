"""The pure-Python install (ANOFAST_NO_EXTENSION=1) works and ships the Triton kernels as anofast._kernels."""

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pure_wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "ANOFAST_NO_EXTENSION": "1"}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True, env=env, capture_output=True,
    )
    (wheel,) = out.glob("anofast-*.whl")
    return wheel


def test_wheel_contents(pure_wheel):
    names = zipfile.ZipFile(pure_wheel).namelist()
    assert "anofast/_kernels/__init__.py" in names and "anofast/_kernels/rng.py" in names
    assert not any(n.startswith("anofast/_C") for n in names)
    assert not any(n.startswith(("kernels/", "csrc/", "tests/")) for n in names)


def test_pure_python_install_falls_back_to_reference(pure_wheel, tmp_path):
    zipfile.ZipFile(pure_wheel).extractall(tmp_path)
    code = (
        "import warnings, torch, anofast\n"
        "from anofast._dispatch import resolve\n"
        "from anofast import BackendUnavailableError\n"
        "from anofast.ops.rng import rng_uniform\n"
        "assert resolve('rng_uniform', torch.device('cpu')) == 'reference'\n"
        "try:\n"
        "    rng_uniform(torch.tensor([1]), 0, 3, backend='cpp')\n"
        "    raise SystemExit('cpp should be unavailable')\n"
        "except BackendUnavailableError as e:\n"
        "    assert 'anofast._C' in str(e)\n"
        "gen = anofast.PerlinAnomaly.draem()\n"
        "with warnings.catch_warnings(record=True):\n"
        "    out = gen(torch.rand(2, 3, 32, 32), seed=0)\n"
        "assert out.image.shape == (2, 3, 32, 32)\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ANOFAST_BACKEND"}
    # -S: no .pth files, so the developer's editable install (a meta-path finder) cannot shadow the wheel;
    # torch and numpy still come from site-packages, after the unpacked wheel.
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), sysconfig.get_paths()["purelib"]])
    res = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
