"""How a claimed batch is placed: a small one in Python by the scheduling kernel's own rule,
a larger one by the kernel.

Under load a claim brings a few tasks for a few agents; building the kernel's NumPy inputs
and calling into Numba then costs more than the rule itself (decision 69). This is the rule of
:func:`multiswarm.kernels.reference.reference_schedule` for unit costs, equal capacities and
no dependencies (what :meth:`~multiswarm.placement.SwarmAgents.place` asks): the most urgent
task first (then claim order), each on a live agent holding its capabilities with a free slot,
chosen by the strategy; the same picks and round-robin cursor as the kernel's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from multiswarm.kernel_warmup import _kernel_ready

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

#: Largest batch, in tasks times agents, placed here rather than by the kernel.
SMALL_PAIRS = 64


def place_small(
    priorities: Sequence[int],
    needs: Sequence[int],
    load: Sequence[int],
    concurrency: int,
    caps: Sequence[int],
    live: Sequence[bool],
    strategy: str,
    cursor: int,
) -> tuple[list[int], int]:
    """Agent per task (``-1``: none can take it) and the next round-robin cursor.

    ``priorities``: per task, 0 high to 2 low; ``needs``: per task, its capability mask;
    ``load``, ``caps``, ``live``: per agent, tasks in flight, capability mask, and whether it
    may take work (healthy or degraded)."""
    n, m = len(priorities), len(load)
    cursor = cursor % m if m else 0
    left = [concurrency - x if ok else 0 for x, ok in zip(load, live)]
    held = list(load)
    picks = [-1] * n
    for t in sorted(range(n), key=priorities.__getitem__):  # stable: claim order within
        need = needs[t]
        fits = [a for a in range(m) if left[a] >= 1 and caps[a] & need == need]
        if not fits:
            continue
        if strategy == "round_robin":
            a = min(fits, key=lambda a: (a - cursor) % m)
            cursor = (a + 1) % m
        elif strategy == "capability":
            a = min(fits, key=lambda a: ((caps[a] & ~need).bit_count(), held[a], a))
        else:  # least_loaded; load_balanced too, every agent of a swarm having one capacity
            a = min(fits, key=lambda a: (held[a], a))
        picks[t] = a
        held[a] += 1
        left[a] -= 1
    return picks, cursor


def schedule(
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
    """Agent per task and the next round-robin cursor: the kernel once warm, else the reference.
    The inputs built here are valid, so both are called without the public wrapper's checks
    (``kernels.scheduling.schedule``: ~10 calls into Numba per batch, most of a one-task
    batch's cost)."""
    import numpy as np

    from multiswarm.kernels.constants import STRATEGIES

    n, m = priority.shape[0], agent_load.shape[0]
    run: Any
    if _kernel_ready.is_set():
        from multiswarm.kernels.scheduling import schedule_kernel as run
    else:
        from multiswarm.kernels.reference import reference_schedule as run
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
