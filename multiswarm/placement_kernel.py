"""The scheduling kernel's call for one claimed batch (:class:`multiswarm.placement.SwarmAgents`).

Kept apart from placement.py so that module stays one concern: which agent runs what.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["constant", "schedule_batch"]


def schedule_batch(
    priority: npt.NDArray[np.int64],
    task_caps: npt.NDArray[np.uint64],
    task_cost: npt.NDArray[np.float64],
    agent_load: npt.NDArray[np.float64],
    agent_capacity: npt.NDArray[np.float64],
    agent_caps: npt.NDArray[np.uint64],
    agent_health: npt.NDArray[np.int8],
    strategy: str,
    cursor: int,
) -> tuple[npt.NDArray[np.int64], int]:
    """Agent per task and the next round-robin cursor, by the scheduling kernel (loaded by
    :func:`~multiswarm.kernel_warmup.warm_up`; before that, placement uses the kernel's
    definition on lists, decision 87). The inputs built here are valid, so the kernel is
    called without the public wrapper's checks
    (``kernels.scheduling.schedule``: ~10 calls into Numba per batch, most of a one-task
    batch's cost)."""
    import numpy as np

    from multiswarm.kernels.constants import STRATEGIES
    from multiswarm.kernels.scheduling import schedule_kernel as run

    n, m = priority.shape[0], agent_load.shape[0]
    assignment, _reason, _load, new_cursor, _order = run(
        *(priority, task_caps, task_cost, agent_load, agent_capacity, agent_caps, agent_health),
        *(constant(n + 1, 0, np.int64), constant(0, 0, np.int64)),
        *(STRATEGIES[strategy], cursor % m if m else 0),
    )
    return assignment, int(new_cursor)


#: Constant arrays of the placement's kernel calls, by (length, value, dtype).
_CONSTANTS: dict[tuple[int, float, Any], Any] = {}


def constant(n: int, value: float, dtype: Any = None) -> Any:
    """An array of ``n`` times ``value`` (``float64`` unless ``dtype``), made once: the kernels
    only read these inputs. (Not flagged read-only: Numba types a read-only array apart, so the
    cached kernel would be compiled again for it.)"""
    import numpy as np

    dtype = np.float64 if dtype is None else dtype
    key = (n, value, dtype)
    arr = _CONSTANTS.get(key)
    if arr is None:
        if len(_CONSTANTS) > 256:  # batch sizes vary: keep a bounded few
            _CONSTANTS.clear()
        arr = np.full(n, value, dtype)
        _CONSTANTS[key] = arr
    return arr
