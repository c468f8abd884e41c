"""The one place that imports Numba, so that ``import multiswarm.kernels`` stays light.

``njit`` wraps :func:`numba.njit` with ``cache=True`` (compiled code is written next to the
module, so a CLI command does not pay the compile time on every start) and keeps the decorated
function's type for mypy, which sees Numba as untyped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

__all__ = ["njit"]

_F = TypeVar("_F", bound=Callable[..., Any])


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
