"""Triton kernels of anofast (the CUDA path), installed as ``anofast._kernels``.

Imported lazily by anofast's dispatcher, never by ``import anofast``. Each module mirrors a reference in
``anofast/reference`` and is tested against it on the CPU under ``TRITON_INTERPRET=1``.
"""
