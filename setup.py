"""Build of anofast: one pybind11 C++17 extension ``anofast._C`` over raw contiguous buffers.

The extension does not link against libtorch, so ``pip install .`` needs only setuptools and pybind11 in
its build environment (no torch at build time) and one build serves every torch version.

Environment knobs:
    ANOFAST_NO_EXTENSION=1  pure-Python install (reference backend on the CPU; Triton still works on CUDA).
    ANOFAST_NATIVE=1        add -march=native (a local build only: such a binary may not run on other CPUs).
    ANOFAST_NO_OPENMP=1     build without OpenMP (kernels then run on one thread).
    ANOFAST_DEBUG=1         -O0 -g.
"""

import glob
import os
import sys

from setuptools import setup

NO_EXTENSION = os.environ.get("ANOFAST_NO_EXTENSION", "0") == "1"
NATIVE = os.environ.get("ANOFAST_NATIVE", "0") == "1"
NO_OPENMP = os.environ.get("ANOFAST_NO_OPENMP", "0") == "1"
DEBUG = os.environ.get("ANOFAST_DEBUG", "0") == "1"

ext_modules = []
cmdclass = {}
if not NO_EXTENSION:
    from pybind11.setup_helpers import Pybind11Extension, build_ext

    # -ffp-contract=off: no fused multiply-add, so every float result equals the reference's bit for bit.
    cflags = ["-O0", "-g"] if DEBUG else ["-O3", "-DNDEBUG"]
    cflags += ["-ffp-contract=off", "-fno-math-errno"]
    ldflags = []
    if NATIVE:
        cflags.append("-march=native")
    if not NO_OPENMP and sys.platform.startswith("linux"):
        cflags.append("-fopenmp")
        ldflags.append("-fopenmp")
    ext_modules.append(
        Pybind11Extension(
            "anofast._C",
            sources=sorted(glob.glob("csrc/**/*.cpp", recursive=True)),
            depends=sorted(glob.glob("csrc/**/*.h", recursive=True)),  # a changed header rebuilds the extension
            include_dirs=["csrc"],
            cxx_std=17,
            extra_compile_args=cflags,
            # anofast._C.build_flags: what the benchmarks record about the build.
            define_macros=[("ANOFAST_BUILD_FLAGS", '"' + " ".join(cflags) + '"')],
            extra_link_args=ldflags,
        )
    )
    cmdclass = {"build_ext": build_ext}

setup(
    packages=[p for p in __import__("setuptools").find_packages(include=["anofast", "anofast.*"])] + ["anofast._kernels"],
    package_dir={"anofast._kernels": "kernels"},
    package_data={"anofast": ["py.typed"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
