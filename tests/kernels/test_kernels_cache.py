"""Decision 82: a cached kernel is recompiled when a jitted function it calls, in another module
of the package, changes (Numba keys the cache by the caller's file alone)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from multiswarm.kernels import _jit

CALLEE = "from ._jit import njit\n\n\n@njit\ndef value() -> int:\n    return {n}\n"
CALLER = (
    "from ._jit import njit\nfrom .callee import value\n\n\n"
    "@njit\ndef kernel() -> int:\n    return value() + 0\n"
)


def run_kernel(root: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", "from pk.caller import kernel; print(kernel())"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_change_of_a_called_module_recompiles_the_cached_kernel(tmp_path: Path) -> None:
    pkg = tmp_path / "pk"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copy(_jit.__file__, pkg / "_jit.py")
    (pkg / "caller.py").write_text(CALLER)
    (pkg / "callee.py").write_text(CALLEE.format(n=1))
    assert run_kernel(tmp_path) == "1"
    assert list((pkg / "__pycache__").glob("caller.kernel-*.nbi"))  # cached
    (pkg / "callee.py").write_text(CALLEE.format(n=2))
    assert run_kernel(tmp_path) == "2"


def test_the_cache_is_kept_while_the_sources_are_unchanged(tmp_path: Path) -> None:
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (cache / "a.f-1.py311.nbi").write_bytes(b"index")
    assert _jit.drop_stale_cache(tmp_path)  # no stamp yet: dropped, stamp written
    (cache / "a.f-1.py311.nbi").write_bytes(b"index")
    assert not _jit.drop_stale_cache(tmp_path)
    assert (cache / "a.f-1.py311.nbi").exists()
    (tmp_path / "a.py").write_text("x = 2\n")
    assert _jit.drop_stale_cache(tmp_path)
    assert not (cache / "a.f-1.py311.nbi").exists()
