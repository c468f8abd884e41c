"""The runs of an agent (:mod:`multiswarm.agent_runtime`): a slot per running task of a
concurrent agent, how a stop reaches a sync handler in its slot thread, who is to blame when an
async handler blocks the event loop every async run shares, and what a stopped run of an agent
of concurrency 1 left running."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "BLOCKED_AFTER_S",
    "Slot",
    "TaskStopped",
    "call_in_slot",
    "clock_ticks",
    "end_what_it_left",
    "name_the_blocker",
    "raise_in_thread",
]

#: How long a stop of an async run may wait for the agent's event loop before the agent names
#: the run holding the loop to its worker, in seconds. Below the worker's stop grace
#: (:data:`multiswarm.agents.STOP_GRACE_S`, 2 s), so the name arrives before the worker kills
#: the agent; above a busy loop's ordinary delays (asyncio's debug mode flags 0.1 s).
BLOCKED_AFTER_S = 0.75


class TaskStopped(BaseException):
    """Raised inside a handler whose task was cancelled: a BaseException, so a handler's
    ``except Exception`` does not swallow it, while its ``finally`` blocks and context
    managers still run."""


class Slot:
    """One running task: its asyncio task, and the slot thread running its sync handler;
    ``on_loop`` once it is the event loop's to start or run (an async handler)."""

    __slots__ = ("lock", "on_loop", "stopping", "task", "thread")

    def __init__(self, on_loop: bool = False) -> None:
        self.lock = threading.Lock()
        self.thread: int | None = None
        self.task: asyncio.Task[None] | None = None
        self.stopping = False
        self.on_loop = on_loop


def raise_in_thread(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in thread ``thread_id`` at its next Python instruction (None: clear)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None
    )


def call_in_slot(slot: Slot, fn: Callable[..., Any], payload: Any, ctx: Any) -> Any:
    """Run a sync handler in a slot thread, stoppable through ``slot`` while it runs."""
    with slot.lock:
        if slot.stopping:
            raise TaskStopped()
        slot.thread = threading.get_ident()
    try:
        return fn(payload, ctx)
    finally:
        with slot.lock:
            slot.thread = None
            if slot.stopping:
                # a stop that arrived as the handler returned must not hit its thread's own loop
                # (without a stop, none was raised here: a stop sets ``stopping`` first)
                raise_in_thread(threading.get_ident(), None)


def name_the_blocker(
    loop: asyncio.AbstractEventLoop,
    slots: Mapping[str, Slot],
    post: Callable[[tuple[str, str, str]], None],
) -> None:
    """After a stop of an async run was handed to ``loop``: if the loop has not turned within
    :data:`BLOCKED_AFTER_S`, tell the worker which run holds it, ``(task_id, "blocked", "")``,
    and ``("", "unblocked", "")`` once it turns again.

    A handler that blocks the loop (``time.sleep``, CPU work without an ``await``) keeps every
    other async run of the agent from its stop and its timeout, and the worker kills the agent
    to stop them. Without a name the blocker was handed back uncounted with the others, and the
    run whose stop failed was charged the attempt: the culprit ran again for ever while the
    runs beside it went to the dead-letter queue (found in session 20's review of long-running
    work). With it the worker charges the blocker and hands the others back (decision 125).
    Called from the pipe's reader thread; waits in a daemon thread of its own (stops are rare).
    """
    turned = threading.Event()
    loop.call_soon_threadsafe(turned.set)

    def watch() -> None:
        if turned.wait(BLOCKED_AFTER_S):
            return
        # the loop's thread is inside a handler: the task it runs is its current one
        current = asyncio.current_task(loop)
        blocker = next((t for t, s in list(slots.items()) if s.task is current), None)
        if current is None or blocker is None:
            return  # a task the handler made itself: no run to name
        with contextlib.suppress(OSError):  # the worker went away
            post((blocker, "blocked", ""))
            turned.wait()
            post(("", "unblocked", ""))

    threading.Thread(target=watch, name="agent-loop-watch", daemon=True).start()


def clock_ticks() -> int:
    """Now, in the clock ticks since boot that ``/proc/<pid>/stat`` dates a process's start in
    (0 where there is no such clock)."""
    try:
        return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))
    except (AttributeError, OSError, ValueError):
        return 0


def end_what_it_left(began: int) -> None:
    """After a stopped handler (a timeout, a cancel) of an agent of concurrency 1: SIGKILL the
    processes it started and left running: the members of this agent's process group other
    than itself (decision 124 made the group its handlers'; decision 127) that started since
    the run began (clock ticks ``began``; a process started in that very tick counts as the
    run's), not a helper an earlier run started and keeps (found in session 21's review). A
    handler that waited on a tool (``Popen.wait``) leaves it
    when the stop lands; before decision 127 the kill of the whole group ended it. (Linux: read
    from ``/proc``; elsewhere nothing.)"""
    me = os.getpid()
    if not began or os.getpgrp() != me or not os.path.isdir("/proc"):
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            # state, ppid, pgrp ... follow the command in parentheses (which may hold
            # anything); the start time is the 22nd field, the 20th after the parenthesis
            fields = stat[stat.rindex(b")") + 2 :].split()
            if int(fields[2]) == me and int(fields[19]) >= began:
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
