"""Handlers for the agent concurrency tests (imported by agent processes, prefix ``tests.``)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from multiswarm.agents import TaskContext, TaskStopped


def _start(payload: dict[str, Any], ctx: TaskContext) -> float:
    """Mark the task started (``<task>.started``, one line per run in ``<task>.runs``) and
    return how long to run: ``seconds``, or ``again_seconds`` on a run after the first."""
    folder = Path(payload["dir"])
    (folder / f"{ctx.task_id}.started").write_text(str(os.getpid()))
    runs = folder / f"{ctx.task_id}.runs"
    again = runs.exists()
    with runs.open("a") as f:
        f.write(f"{os.getpid()}\n")
    return float(payload.get("again_seconds", payload["seconds"]) if again else payload["seconds"])


def spin(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Busy-wait in Python (stoppable at any instruction) for as long as :func:`_start` says;
    writes ``<dir>/<task>.unwound`` from its ``finally``."""
    folder = Path(payload["dir"])
    try:  # a stop may land anywhere after the start mark: inside this try
        end = time.monotonic() + _start(payload, ctx)
        while time.monotonic() < end:
            pass
        return {"task": ctx.task_id, "pid": os.getpid()}
    finally:
        (folder / f"{ctx.task_id}.unwound").write_text("")


async def nap(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Sleep on the agent's event loop (:func:`_start`); ``<task>.unwound`` from ``finally``."""
    folder = Path(payload["dir"])
    try:
        await asyncio.sleep(_start(payload, ctx))
        return {"task": ctx.task_id, "pid": os.getpid()}
    finally:
        (folder / f"{ctx.task_id}.unwound").write_text("")


def block(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Deaf to a stop: blocks in C (``time.sleep``) for ``seconds``, where no cooperative stop
    reaches it in a pool thread, so stopping it kills its agent.

    A stop sent once the start mark exists may also land in the Python code between the mark and
    the sleep (a window no test can close from outside): :class:`TaskStopped` is ignored there
    too, so the handler is deaf whenever the stop comes, not only once it sleeps."""
    end = 0.0
    while True:
        try:
            if not end:
                end = time.monotonic() + float(payload["seconds"])
                _start(payload, ctx)
            left = end - time.monotonic()
            if left <= 0:
                return {"task": ctx.task_id}
            time.sleep(left)
        except TaskStopped:
            continue


def rendezvous(payload: dict[str, Any], ctx: TaskContext) -> int:
    """Mark this task started, then wait (at most ``timeout_s``) until ``count`` tasks have:
    only tasks running at the same time all meet. Returns how many had started."""
    folder = Path(payload["dir"])
    (folder / f"{ctx.task_id}.started").write_text(str(os.getpid()))
    end = time.monotonic() + float(payload.get("timeout_s", 20.0))
    seen = 0
    while time.monotonic() < end:
        seen = len(list(folder.glob("*.started")))
        if seen >= int(payload["count"]):
            break
        time.sleep(0.01)
    return seen


def digest(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """SHA-256 of ``payload['blob']`` and of each dependency's ``blob``: proof the bytes came
    through intact, whichever way."""
    import hashlib

    deps = {k: hashlib.sha256(v["blob"]).hexdigest() for k, v in ctx.dependencies.items()}
    return {"blob": hashlib.sha256(payload["blob"]).hexdigest(), "deps": deps}


def echo(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Its task id, attempt and ``pad`` characters (a large reply when ``pad`` is large)."""
    return {"task": ctx.task_id, "attempt": ctx.attempt, "pad": "x" * int(payload.get("pad", 0))}


async def echo_async(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """:func:`echo` on the agent's event loop."""
    await asyncio.sleep(0)
    return echo(payload, ctx)


def echo_later(payload: dict[str, Any], ctx: TaskContext) -> Any:
    """A sync function returning an awaitable: the agent awaits it on its loop."""
    return echo_async(payload, ctx)


def fail(payload: dict[str, Any], ctx: TaskContext) -> None:
    """Raises (a handler's bug: ``error``, retryable)."""
    raise ValueError(f"failing on purpose in {ctx.task_id}")


def run_tool(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Run a long external tool (``sleep 300``) and wait for it, as a handler shelling out
    does; the tool's pid in ``<dir>/<task>.child``."""
    import subprocess

    child = subprocess.Popen(["sleep", "300"])
    (Path(payload["dir"]) / f"{ctx.task_id}.child").write_text(str(child.pid))
    child.wait()
    return {"task": ctx.task_id}


async def hog(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """An async handler with a bug: it blocks the agent's event loop (``time.sleep``) for
    ``seconds`` instead of awaiting."""
    time.sleep(_start(payload, ctx))  # noqa: ASYNC251  (the bug this handler stands for)
    return {"task": ctx.task_id}


def report_then_wait(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Reports 0.5 "halfway", waits for ``<dir>/go``, reports 1.0 "done" and returns."""
    folder = Path(payload["dir"])
    ctx.progress(0.5, "halfway")
    while not (folder / "go").exists():
        time.sleep(0.05)
    ctx.progress(1.0, "done")
    return {"task": ctx.task_id}


async def report_then_wait_async(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """:func:`report_then_wait` on the agent's event loop."""
    folder = Path(payload["dir"])
    ctx.progress(0.5, "halfway")
    while not await asyncio.to_thread((folder / "go").exists):
        await asyncio.sleep(0.05)
    ctx.progress(1.0, "done")
    return {"task": ctx.task_id}


def slow_finally(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Sleeps ``seconds``; its ``finally`` takes ``cleanup_s`` and then writes
    ``<dir>/<task>.cleaned`` (a cleanup a second stop must not cut short)."""
    folder = Path(payload["dir"])
    try:
        time.sleep(_start(payload, ctx))
        return {"task": ctx.task_id}
    finally:
        time.sleep(float(payload["cleanup_s"]))
        (folder / f"{ctx.task_id}.cleaned").write_text("")


_HELPERS: list[Any] = []


def keep_helper(payload: dict[str, Any], ctx: TaskContext) -> int:
    """Starts a helper process (``cat``) that this agent keeps for later runs; its pid."""
    import subprocess

    helper = subprocess.Popen(["cat"], stdin=subprocess.PIPE)
    _HELPERS.append(helper)
    # /proc dates a start to the clock tick (10 ms): the next run starts ticks later
    time.sleep(0.05)
    return helper.pid
