"""pytest-benchmark entry over every ``benchmarks/bench_*.py``: one benchmark per (op, case, usable cell).

Run with ``python -m pytest benchmarks --benchmark-only`` (pyproject's testpaths keep this out of the normal
test suite). Each bench module is read for its ``main("<op>", CASES, make_fn)`` call(s), so the scripts need
nothing beyond what ``python benchmarks/bench_<op>.py`` already uses.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench scripts import `common` as a top-level module

from common import case_label, matrix  # noqa: E402


def _main_calls(path: Path, module) -> list[tuple[str, list[dict], Callable]]:
    """``(op, cases, make_fn)`` of each ``main("op", <cases>, <make_fn>)`` call in the script.

    The argument expressions (``CASES``, ``CASES[:1]``, ...) are evaluated in the imported module's namespace.
    """
    calls = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "main":
            if len(node.args) < 3 or not isinstance(node.args[0], ast.Constant):
                continue
            cases, make_fn = (eval(compile(ast.Expression(a), str(path), "eval"), vars(module)) for a in node.args[1:3])
            calls.append((node.args[0].value, cases, make_fn))
    return calls


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(f"bench_modules.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _params() -> list:
    params = []
    for path in sorted(HERE.glob("bench_*.py")):
        try:
            module = _import(path)
            calls = _main_calls(path, module)
            if not calls:
                raise LookupError(f'{path.name} has no main("<op>", CASES, make_fn) call')
        except Exception as exc:  # surfaced as a failing test of that script rather than a collection crash
            params.append(pytest.param(None, None, None, exc, id=f"{path.stem}-error"))
            continue
        for op, cases, make_fn in calls:
            for case in cases:
                for cell in matrix(op):
                    pid = f"{op}-{case_label(case).replace(' ', '_')}-{cell.id}"
                    params.append(pytest.param(op, case, cell, make_fn, id=pid))
    return params


@pytest.mark.parametrize(("op", "case", "cell", "make_fn"), _params())
def test_benchmark(benchmark, op, case, cell, make_fn):
    if isinstance(make_fn, Exception):
        raise make_fn
    saved = torch.get_num_threads()
    torch.set_num_threads(cell.threads)
    try:
        fn = make_fn(case, cell.backend, cell.device)
        if cell.device.type == "cuda":
            inner = fn

            def fn():  # the Timer in common.py synchronises by itself; pytest-benchmark does not
                inner()
                torch.cuda.synchronize()

        benchmark.group = f"{op} {case_label(case)}"
        benchmark.extra_info.update(
            op=op, backend=cell.backend, device=cell.device.type, threads=cell.threads, case=dict(case)
        )
        benchmark(fn)
    finally:
        torch.set_num_threads(saved)
