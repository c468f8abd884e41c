"""Assign one batch of tasks to the agents of one swarm (DESIGN.md, Distribution to agents).

:func:`schedule` validates its inputs and runs
:func:`~multiswarm.kernels.scheduling_kernel.schedule_kernel`, a Numba kernel over arrays;
:func:`multiswarm.kernels.reference.reference_schedule` is the plain-Python definition of the
expected answer, and ``backend="python"`` runs it instead.

Rules, shared by the kernel and the reference:

* Tasks are taken in a priority-respecting topological order: of the tasks whose in-batch
  dependencies have all been decided, the highest priority goes first, ties to the lowest index.
  Without dependencies this is a stable sort by descending priority.
* A task may go to an agent that is healthy or degraded, holds every capability bit the task
  requires (``agent_caps & task_caps == task_caps``) and has room
  (``load + cost <= capacity``). The chosen agent's load grows by the task's cost at once, so
  later tasks of the batch see it.
* A task that cannot be placed gets agent ``-1`` and a reason code from
  :mod:`multiswarm.kernels.constants`; so do its dependents (``DEPENDENCY_UNASSIGNED``).
  Tasks on a dependency cycle get ``DEPENDENCY_CYCLE``; tasks that only depend on a cycle get
  ``DEPENDENCY_UNASSIGNED``. Neither kind is ever placed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from ._checks import BAD_CSR_RANGE, BAD_CSR_SHAPE, BAD_HEALTH, check_agents_csr, first_bad_value
from ._validate import as_array, as_index, check_length
from .constants import DEAD, HEALTHY, STRATEGIES
from .errors import KernelInputError
from .scheduling_kernel import schedule_kernel

__all__ = ["ScheduleResult", "deps_to_csr", "schedule", "schedule_kernel"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]


class ScheduleResult(NamedTuple):
    """What :func:`schedule` decided for one batch.

    Attributes
    ----------
    assignment
        ``int64[n_tasks]``: agent index per task, ``-1`` if not placed.
    reason
        ``int8[n_tasks]``: ``ASSIGNED`` or why the task was not placed (``constants.REASON_NAMES``).
    agent_load
        ``float64[n_agents]``: load after the batch, in the same units as the task costs.
    cursor
        Round-robin cursor to pass to the next batch (unchanged by the other strategies).
    order
        ``int64[n_placed]``: the placed tasks, in the order they were placed.
    """

    assignment: I64
    reason: I8
    agent_load: F64
    cursor: int
    order: I64


def deps_to_csr(deps: Sequence[Sequence[int]]) -> tuple[I64, I64]:
    """Build the ``(dep_indptr, dep_indices)`` arrays from one list of dependencies per task.

    Parameters
    ----------
    deps
        ``deps[i]`` lists the indices, within the batch, of the tasks task ``i`` waits for.

    Returns
    -------
    dep_indptr
        ``int64[len(deps) + 1]``.
    dep_indices
        ``int64[total number of dependencies]``.
    """
    indptr = np.zeros(len(deps) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(d) for d in deps], dtype=np.int64)
    indices = np.fromiter((int(x) for d in deps for x in d), dtype=np.int64, count=int(indptr[-1]))
    return indptr, indices


def _strategy_code(strategy: int | str) -> int:
    if isinstance(strategy, str):
        if strategy not in STRATEGIES:
            raise KernelInputError(
                f"unknown strategy {strategy!r}; expected one of {sorted(STRATEGIES)}"
            )
        return STRATEGIES[strategy]
    code = as_index("strategy", strategy)
    if code not in STRATEGIES.values():
        raise KernelInputError(f"unknown strategy code {code}; expected one of {STRATEGIES}")
    return code


def _check_values(name: str, arr: F64, *, low: float, allow_inf: bool, strict: bool) -> None:
    i = first_bad_value(arr, low, allow_inf, strict)
    if i >= 0:
        bound = f"> {low}" if strict else f">= {low}"
        kind = "" if allow_inf else "finite and "
        raise KernelInputError(f"{name}[{i}] = {arr[i]!r}; must be {kind}{bound}")


def schedule(
    priority: npt.ArrayLike,
    task_caps: npt.ArrayLike,
    task_cost: npt.ArrayLike,
    agent_load: npt.ArrayLike,
    agent_capacity: npt.ArrayLike,
    agent_caps: npt.ArrayLike,
    agent_health: npt.ArrayLike,
    *,
    strategy: int | str,
    cursor: int = 0,
    dep_indptr: npt.ArrayLike | None = None,
    dep_indices: npt.ArrayLike | None = None,
    backend: Literal["numba", "python"] = "numba",
) -> ScheduleResult:
    """Assign a batch of tasks to the agents of one swarm.

    Parameters
    ----------
    priority
        ``int64[n]``, higher is more urgent.
    task_caps
        ``uint64[n]``, capability bits each task requires.
    task_cost
        ``float64[n]``, estimated cost in load units; finite and ``>= 0``.
    agent_load
        ``float64[m]``, current load in the same units; finite and ``>= 0``. Not modified.
    agent_capacity
        ``float64[m]``, load an agent may carry; ``> 0``, ``inf`` for unbounded.
    agent_caps
        ``uint64[m]``, capability bits each agent has.
    agent_health
        ``int8[m]``, ``HEALTHY`` (0), ``DEGRADED`` (1), ``UNHEALTHY`` (2) or ``DEAD`` (3); only
        the first two receive work.
    strategy
        A code or name from ``constants.STRATEGIES``. No default: the worker's configuration
        chooses it.
    cursor
        Round-robin position, the ``cursor`` of the previous batch's result; taken modulo ``m``.
        Default 0, the first agent.
    dep_indptr, dep_indices
        Dependencies inside the batch as CSR (see :func:`deps_to_csr`): task ``i`` waits for
        tasks ``dep_indices[dep_indptr[i]:dep_indptr[i + 1]]``. Both or neither; default none.
    backend
        ``"numba"`` (default) runs the kernel; ``"python"`` the plain-Python reference.

    Returns
    -------
    ScheduleResult

    Raises
    ------
    KernelInputError
        On a length mismatch, a lossy dtype conversion, a value out of range (negative cost or
        load, non-positive capacity, NaN, unknown health code or strategy, negative cursor), or
        malformed dependency arrays.
    """
    prio = as_array("priority", priority, np.int64)
    n = prio.shape[0]
    tcaps = as_array("task_caps", task_caps, np.uint64)
    cost = as_array("task_cost", task_cost, np.float64)
    check_length("task_caps", tcaps, n, "the length of priority")
    check_length("task_cost", cost, n, "the length of priority")
    load = as_array("agent_load", agent_load, np.float64)
    m = load.shape[0]
    cap = as_array("agent_capacity", agent_capacity, np.float64)
    acaps = as_array("agent_caps", agent_caps, np.uint64)
    health = as_array("agent_health", agent_health, np.int8)
    check_length("agent_capacity", cap, m, "the length of agent_load")
    check_length("agent_caps", acaps, m, "the length of agent_load")
    check_length("agent_health", health, m, "the length of agent_load")
    _check_values("task_cost", cost, low=0.0, allow_inf=False, strict=False)
    _check_values("agent_load", load, low=0.0, allow_inf=False, strict=False)
    _check_values("agent_capacity", cap, low=0.0, allow_inf=True, strict=True)
    indptr, indices = _dependencies(n, dep_indptr, dep_indices)
    problem = check_agents_csr(health, HEALTHY, DEAD, indptr, indices, n)
    if problem == BAD_HEALTH:
        raise KernelInputError(f"agent_health codes must be in [{HEALTHY}, {DEAD}]")
    if problem == BAD_CSR_SHAPE:
        raise KernelInputError(
            "dep_indptr must start at 0, never decrease, and end at len(dep_indices)"
        )
    if problem == BAD_CSR_RANGE:
        raise KernelInputError(f"dep_indices must be task indices in [0, {n})")
    code = _strategy_code(strategy)
    pos = as_index("cursor", cursor)
    if pos < 0:
        raise KernelInputError(f"cursor must be >= 0, got {pos}")
    pos = pos % m if m else 0

    if backend == "numba":
        result = schedule_kernel(
            prio, tcaps, cost, load, cap, acaps, health, indptr, indices, code, pos
        )
    elif backend == "python":
        from .reference import reference_schedule

        result = reference_schedule(
            prio, tcaps, cost, load, cap, acaps, health, indptr, indices, code, pos
        )
    else:
        raise KernelInputError(f"unknown backend {backend!r}; expected 'numba' or 'python'")
    assignment, reason, new_load, new_cursor, order = result
    return ScheduleResult(assignment, reason, new_load, int(new_cursor), order)


def _dependencies(
    n: int, dep_indptr: npt.ArrayLike | None, dep_indices: npt.ArrayLike | None
) -> tuple[I64, I64]:
    if dep_indptr is None and dep_indices is None:
        return np.zeros(n + 1, dtype=np.int64), np.empty(0, dtype=np.int64)
    if dep_indptr is None or dep_indices is None:
        raise KernelInputError("pass both dep_indptr and dep_indices, or neither")
    indptr = as_array("dep_indptr", dep_indptr, np.int64)
    indices = as_array("dep_indices", dep_indices, np.int64)
    check_length("dep_indptr", indptr, n + 1, "the number of tasks + 1")
    return indptr, indices
