"""The one place that imports Numba, so that ``import multiswarm.kernels`` stays light.

``njit`` wraps :func:`numba.njit` with ``cache=True`` (compiled code is written next to the
module, so a CLI command does not pay the compile time on every start) and keeps the decorated
function's type for mypy, which sees Numba as untyped.

Loading even a cached kernel makes Numba import its NumPy implementations
(``numba.np.arraymath``), which probe for SciPy's BLAS by importing ``scipy.linalg``: 0.4 s of
CPU and GIL where SciPy is installed, for a result only ``np.cov``/``np.correlate`` of floats
use (no kernel here does; they fall back to a plain loop). The probe is answered "absent" for
that one import (decision 55), which halves a worker's time to its first claim.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

__all__ = ["njit"]

_F = TypeVar("_F", bound=Callable[..., Any])
#: The module whose import is Numba's BLAS probe (numba.np.linalg.ensure_blas).
_BLAS_PROBE = "scipy.linalg.cython_blas"


def _import_numpy_support() -> None:
    """Import ``numba.np.arraymath`` with its BLAS probe failing fast, unless SciPy's linalg is
    loaded already (then the probe is free and its answer kept)."""
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    blocked = _BLAS_PROBE not in sys.modules
    if blocked:
        sys.modules[_BLAS_PROBE] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        if blocked and sys.modules.get(_BLAS_PROBE, 0) is None:
            del sys.modules[_BLAS_PROBE]


_import_numpy_support()


def njit(fn: _F) -> _F:
    """Compile ``fn`` in nopython mode with on-disk caching.

    Parameters
    ----------
    fn
        A function using only Numba-supported Python and NumPy.

    Returns
    -------
    The Numba dispatcher, typed as ``fn`` so callers keep their signatures.
    """
    return cast(_F, numba.njit(cache=True)(fn))
