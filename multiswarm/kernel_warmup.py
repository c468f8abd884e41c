"""Loading the Numba kernels of placement and of the node's memory pool into a worker.

A worker serves from its first moment on the Python paths (the scheduling kernel's reference,
:class:`~multiswarm.placement.NodeMemory` counting small inputs) and loads the kernels when it
is first idle (decision 55).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from typing import Protocol

__all__ = ["kernels_ready", "warm_up", "warm_up_beside", "warm_up_when_idle"]

#: Set once the kernels are compiled or loaded (:func:`warm_up`); a batch placed before that
#: goes to the pure-Python reference, which gives the same answer (tests/kernels), rather than
#: load Numba in the middle of a claim.
_kernel_ready = threading.Event()
_warm_lock = threading.Lock()
#: The GIL switch interval while the kernels load beside a serving worker, seconds.
WARM_UP_SWITCH_S = 0.0005
#: A worker loads the kernels once it has held and claimed no task for this long, seconds...
WARM_UP_IDLE_S = 0.2
#: ...or, busy all along, this long after it started serving, seconds.
WARM_UP_LATEST_S = 5.0


def kernels_ready() -> bool:
    """Whether :func:`warm_up` has loaded the kernels in this process."""
    return _kernel_ready.is_set()


def warm_up() -> None:
    """Compile (or load from cache) the scheduling kernel and the memory pool's kernels, for
    the argument types placement and :class:`~multiswarm.placement.NodeMemory` pass; placement
    uses the scheduling kernel from then on. Idempotent, and loads once when called from
    several threads (the workers of a partitioned process); ~0.3 s of CPU from a warm cache."""
    with _warm_lock:
        if not _kernel_ready.is_set():
            _load_kernels()
            _kernel_ready.set()


def _load_kernels() -> None:
    import numpy as np

    from multiswarm.kernels.memory import RegionPool
    from multiswarm.kernels.scheduling import schedule

    schedule(
        np.zeros(1, np.int64),
        np.zeros(1, np.uint64),
        np.ones(1),
        np.zeros(1),
        np.ones(1),
        np.zeros(1, np.uint64),
        np.zeros(1, np.int8),
        strategy="least_loaded",
    )
    # every pool call of a worker: admit, release, collect, load
    region = 64 * 1024
    pool = RegionPool(2 * region, region, policy="lru")
    try:
        pool.set_limit(0, max_bytes=region)
        pool.free(pool.allocate(0, 1, pinned=True))
        pool.gc([0])
        pool.usage()
    finally:
        pool.close()


class SwitchesToKernels(Protocol):
    """What is switched to the kernels once loaded (:class:`~multiswarm.placement.NodeMemory`;
    named by its method so this module does not import placement, which imports it)."""

    def use_kernels(self) -> None: ...


async def warm_up_when_idle(
    memory: SwitchesToKernels,
    busy: Callable[[], bool],
    taken: Callable[[], int],
    idle_s: float = WARM_UP_IDLE_S,
    latest_s: float = WARM_UP_LATEST_S,
) -> None:
    """:func:`warm_up_beside` once the worker has been idle for ``idle_s``: ``busy()`` (it holds
    tasks) false at every look and ``taken()`` (tasks it has claimed so far) unchanged over
    that span; or after ``latest_s`` in any case. Looks every ``idle_s / 4``.

    Until then the Python paths cost ~6 µs a task placed and ~2 µs a small input counted, so
    a burst of a few thousand tasks (a drain) runs faster on them than it would beside the
    load's ~0.3 s of CPU, and the load then holds no lease at risk. ``busy()`` alone is not
    enough: under a steady trickle of short tasks (one round trip after another) a look every
    ``idle_s / 4`` finds nothing held most of the time, and the load, slowing every event-loop
    turn by the GIL it holds, then ran beside that traffic."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + latest_s
    quiet_since: float | None = None
    seen = taken()
    while (now := loop.time()) < deadline:
        count = taken()
        if busy() or count != seen:
            quiet_since, seen = None, count
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= idle_s:
            break
        await asyncio.sleep(idle_s / 4)
    await warm_up_beside(memory)


async def warm_up_beside(memory: SwitchesToKernels) -> None:
    """:func:`warm_up` in a thread while the worker serves, then ``memory`` on the kernels.

    The load's pure-Python stretches hold the GIL for at most ~20 ms at a time (Numba's SciPy
    probe, which held it for 0.4 s, is skipped: :mod:`multiswarm.kernels._jit`), so the event
    loop's lease renewals keep their pace meanwhile."""
    # the event loop gives up the GIL at every socket call and, beside a busy thread, waits a
    # switch interval (5 ms) to get it back: shortened meanwhile, it keeps claiming apace
    _shorten_switch(1)
    try:
        await asyncio.to_thread(warm_up)
    finally:
        _shorten_switch(-1)
    memory.use_kernels()


_switch_lock = threading.Lock()
#: [loads under way, the switch interval before the first of them]
_switch = [0, 0.0]


def _shorten_switch(step: int) -> None:
    """Count a load in (1) or out (-1); the first in shortens the interval, the last out
    restores it (the workers of a partitioned process load side by side)."""
    with _switch_lock:
        if step > 0 and _switch[0] == 0:
            _switch[1] = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch[1], WARM_UP_SWITCH_S))
        _switch[0] += step
        if step < 0 and _switch[0] == 0:
            sys.setswitchinterval(_switch[1])
