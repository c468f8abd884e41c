"""Input coercion shared by the kernel wrappers: NumPy in, contiguous arrays of one dtype out.

Kernels are compiled per dtype and index without bounds checks, so everything they receive is
checked here first; a failure raises :class:`KernelInputError` naming the argument.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from .errors import KernelInputError

__all__ = ["as_array", "as_index", "check_length"]

_S = TypeVar("_S", bound=np.generic)


def as_array(name: str, value: npt.ArrayLike, dtype: type[_S]) -> npt.NDArray[_S]:
    """Return ``value`` as a 1-D C-contiguous array of ``dtype`` without losing information.

    Parameters
    ----------
    name
        Argument name, used in the error message.
    value
        Anything :func:`numpy.asarray` accepts.
    dtype
        Target scalar type, e.g. ``np.int64``.

    Returns
    -------
    A 1-D array of ``dtype``; ``value`` itself when it already is one.

    Raises
    ------
    KernelInputError
        If the array is not 1-D, or converting it would change a value (a float to an integer,
        a negative number to an unsigned type, an out-of-range integer).
    """
    arr: npt.NDArray[Any] = np.asarray(value)
    if arr.ndim != 1:
        raise KernelInputError(f"{name} must be 1-D, got shape {arr.shape}")
    target = np.dtype(dtype)
    if arr.dtype == target:
        return np.ascontiguousarray(arr)
    if arr.size == 0:
        return np.empty(0, dtype=target)
    if np.can_cast(arr.dtype, target, casting="safe"):
        return np.ascontiguousarray(arr, dtype=target)
    # Integer to integer is fine when every value fits (e.g. a list of Python ints -> uint64).
    if arr.dtype.kind in "iub" and target.kind in "iu":
        info = np.iinfo(target)
        low, high = int(arr.min()), int(arr.max())
        if info.min <= low and high <= info.max:
            return np.ascontiguousarray(arr, dtype=target)
        raise KernelInputError(
            f"{name} has values in [{low}, {high}], outside {target} [{info.min}, {info.max}]"
        )
    raise KernelInputError(f"{name} must have dtype {target}, got {arr.dtype}")


def check_length(name: str, arr: npt.NDArray[Any], expected: int, what: str) -> None:
    """Raise :class:`KernelInputError` unless ``len(arr) == expected``.

    ``what`` says where ``expected`` comes from, e.g. ``"the number of tasks"``.
    """
    if arr.shape[0] != expected:
        raise KernelInputError(f"{name} has length {arr.shape[0]}, expected {expected} ({what})")


def as_index(name: str, value: object) -> int:
    """Return ``value`` as a Python ``int``, refusing bools, floats and other types."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise KernelInputError(f"{name} must be an integer, got {type(value).__name__}")
    return int(value)
