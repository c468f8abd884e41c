"""Importing the kernels package must stay cheap: Numba is loaded only when a kernel is used."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("module", ["multiswarm", "multiswarm.kernels"])
def test_import_does_not_load_numba(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "import multiswarm.kernels as k\n"
        "assert k.KernelInputError and k.STRATEGIES and k.LEAST_LOADED == 1\n"
        "assert 'numba' not in sys.modules, 'numba imported'\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr


def test_lazy_names_resolve() -> None:
    code = (
        "import sys, multiswarm.kernels as k\n"
        "assert k.RegionPool.__name__ == 'RegionPool'\n"
        "assert 'numba' not in sys.modules  # the pool loads its kernels on construction\n"
        "r = k.schedule([1], [0], [1.0], [0.0], [1.0], [0], [0], strategy='round_robin')\n"
        "assert r.assignment.tolist() == [0] and 'numba' in sys.modules\n"
        "assert set(k.__all__) <= set(dir(k))\n"
        "try:\n    k.nope\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit(1)\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
