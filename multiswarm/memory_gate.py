"""A task's wait for room in the node's memory pool (:class:`multiswarm.placement.NodeMemory`),
woken by the release that makes it, rather than a hand-back that comes straight back.

Before (session 20's review of long-running work), an input that did not fit for now (its
agent's share held by the inputs of its running tasks, or a fragmented pool) was handed back at
once, uncounted: the leader assigned it again, this worker claimed it again, and it was refused
again, as fast as Redis answered, until a run ended (decision 126).
"""

from __future__ import annotations

import asyncio
from typing import Any

from multiswarm.placement import NodeMemory

__all__ = ["MEMORY_WAIT_S", "MemoryGate"]

#: The longest a claimed task waits in its slot for room in the pool before it is handed back
#: (uncounted), in seconds: room comes when a run of the node ends, and a run that takes longer
#: than this leaves the task to another host, or to this one once it is assigned again.
MEMORY_WAIT_S = 60.0


class MemoryGate:
    """Admissions to ``memory`` that wait for room; every release goes through :meth:`release`
    (or :meth:`freed`, after memory freed another way), which wakes the waiters."""

    def __init__(self, memory: NodeMemory) -> None:
        self.memory = memory
        self._freed = asyncio.Event()
        self.closed = False
        #: admissions that found no room at first (a count for the tests and for debugging)
        self.waits = 0

    async def admit(self, node: int, data: list[bytes], wait_s: float = MEMORY_WAIT_S) -> Any:
        """A pinned allocation of ``data`` for agent ``node``
        (:meth:`NodeMemory.admit`), waiting up to ``wait_s`` seconds for a release to make
        room; None if there was none by then, or the gate closed (the worker is stopping)."""
        alloc = self.memory.admit(node, data)
        if alloc is not None or self.closed:
            return alloc
        self.waits += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while alloc is None and not self.closed:
            freed = self._freed
            try:
                async with asyncio.timeout_at(deadline):
                    await freed.wait()
            except TimeoutError:
                return None
            alloc = self.memory.admit(node, data)
        return alloc

    def release(self, alloc: Any) -> None:
        self.memory.release(alloc)
        self.freed()

    def freed(self) -> None:
        """Wake the waiting admissions: each tries again (one turn of the event loop)."""
        self._freed.set()
        self._freed = asyncio.Event()

    def close(self) -> None:
        """Admissions return None from now on; the waiting ones at once."""
        self.closed = True
        self.freed()
