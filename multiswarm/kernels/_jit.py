"""The one place that imports Numba, so that ``import multiswarm.kernels`` stays light.

``njit`` wraps :func:`numba.njit` with ``cache=True`` (compiled code is written next to the
module, so a CLI command does not pay the compile time on every start) and keeps the decorated
function's type for mypy, which sees Numba as untyped.

Loading even a cached kernel makes Numba import its NumPy implementations
(``numba.np.arraymath``), which probe for SciPy's BLAS by importing ``scipy.linalg``: 0.4 s of
CPU and GIL where SciPy is installed, for a result only ``np.cov``/``np.correlate`` of floats
use (no kernel here does; they fall back to a plain loop). The probe is answered "absent" for
that one import (decision 55), which halves a worker's time to its first claim.

Numba keys a cached kernel by its own file's stamp only, not by the files of the jitted
functions it calls and inlines (``_ranking``, ``_checks``, :func:`shift_left`): a change to one
of those alone would load the old machine code. :func:`drop_stale_cache` guards against that
at import, before any kernel loads (decision 82).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import numba
from llvmlite import ir  # type: ignore[import-untyped]
from numba.core import cgutils, types
from numba.core.extending import intrinsic

__all__ = ["drop_stale_cache", "njit", "shift_left"]

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

#: The stamp of the kernels' sources the cached code in ``__pycache__`` was compiled from.
SOURCES_STAMP = "kernel-sources.sha1"


def drop_stale_cache(package: Path) -> bool:
    """Delete Numba's cached kernels in ``package/__pycache__`` unless they were compiled from
    the package's current ``*.py`` sources; returns True when it deleted them.

    The digest covers every module of the package, as any kernel may call (and inline) jitted
    functions of the others. Best effort: a cache directory that is missing or not writable is
    left as it is (Numba then caches elsewhere, keyed as usual); processes racing here delete
    the same files and write the same stamp.
    """
    cache = package / "__pycache__"
    digest = hashlib.sha1()
    for source in sorted(package.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    current = digest.hexdigest()
    stamp = cache / SOURCES_STAMP
    try:
        if stamp.read_text() == current:
            return False
    except OSError:
        pass
    if not cache.is_dir() or not os.access(cache, os.W_OK):
        return False
    for compiled in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
        with contextlib.suppress(FileNotFoundError):
            compiled.unlink()
    with contextlib.suppress(OSError):
        partial = cache / f"{SOURCES_STAMP}.{os.getpid()}"
        partial.write_text(current)
        os.replace(partial, stamp)
    return True


drop_stale_cache(Path(__file__).resolve().parent)


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


@intrinsic
def _shift_left(typingctx: Any, values: Any, p: Any, q: Any) -> Any:
    """``values[p:q - 1] = values[p + 1:q]`` as one ``memmove``; ``values`` 1-D C-contiguous,
    ``0 <= p < q``."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        array = context.make_array(sig.args[0])(context, builder, args[0])
        start = context.cast(builder, args[1], sig.args[1], types.intp)
        stop = context.cast(builder, args[2], sig.args[2], types.intp)
        one = ir.Constant(start.type, 1)
        dst = builder.gep(array.data, [start])
        src = builder.gep(array.data, [builder.add(start, one)])
        count = builder.sub(builder.sub(stop, start), one)
        itemsize = context.get_abi_sizeof(context.get_data_type(sig.args[0].dtype))
        cgutils.raw_memmove(builder, dst, src, count, itemsize)  # type: ignore[no-untyped-call]
        return context.get_dummy_value()

    return types.void(values, p, q), codegen


#: Shift ``values[p + 1:q]`` left by one place with libc's ``memmove``, inside a kernel: LLVM
#: compiles the element loop to unaligned 64-byte stores, each across two cache lines at a
#: 4-byte offset; ``memmove`` aligns its stores (decision 76: the ranking's moves ~3 % faster).
#: A kernel calling it inlines it; Numba's cache of that kernel is keyed by the kernel's own
#: file, so :func:`drop_stale_cache` drops the cached kernels when this file changes.
shift_left = cast(Callable[[Any, int, int], None], _shift_left)
