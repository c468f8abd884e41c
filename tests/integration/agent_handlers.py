"""Handlers for the agent concurrency tests (imported by agent processes, prefix ``tests.``)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from multiswarm.agents import TaskContext


def spin(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Busy-wait in Python for ``seconds`` (stoppable at any instruction); writes
    ``<dir>/<task>.started`` first and ``<dir>/<task>.unwound`` from its ``finally``."""
    folder = Path(payload["dir"])
    (folder / f"{ctx.task_id}.started").write_text(str(os.getpid()))
    try:
        end = time.monotonic() + float(payload["seconds"])
        while time.monotonic() < end:
            pass
        return {"task": ctx.task_id, "pid": os.getpid()}
    finally:
        (folder / f"{ctx.task_id}.unwound").write_text("")


async def nap(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Sleep ``seconds`` on the agent's event loop; ``<dir>/<task>.started`` when it begins."""
    folder = Path(payload["dir"])
    (folder / f"{ctx.task_id}.started").write_text(str(os.getpid()))
    try:
        await asyncio.sleep(float(payload["seconds"]))
        return {"task": ctx.task_id, "pid": os.getpid()}
    finally:
        (folder / f"{ctx.task_id}.unwound").write_text("")


def block(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Block in C (``time.sleep``) for ``seconds``: no cooperative stop reaches it in a pool
    thread, so stopping it kills its agent."""
    folder = Path(payload["dir"])
    (folder / f"{ctx.task_id}.started").write_text(str(os.getpid()))
    time.sleep(float(payload["seconds"]))
    return {"task": ctx.task_id}
