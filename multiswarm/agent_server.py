"""The process agent processes are forked from: multiprocessing's ``forkserver``, with the agent
runtime imported once in it.

A spawned agent paid a fresh interpreter and the import of :mod:`multiswarm.agent_runtime`
(asyncio, msgspec: ~0.15 s of CPU) each, only after the worker had imported its own stack; an
agent forked from this server starts with them loaded, in a few milliseconds. The server itself
is a fresh interpreter (``spawn``-like: no state of the worker, no threads, no Redis connection
is inherited), it imports :data:`PRELOAD` and nothing of the user's, so every agent is still its
own process that starts clean; handler modules are imported in each agent, as before. Agents
get the worker's ``sys.path`` and working directory at their start, as spawned ones did, but
the environment the server had when it started (see decision 59).

``python -m multiswarm run worker`` starts the server before importing the rest of the CLI
(:func:`start`), so its start-up overlaps the worker's own; otherwise the first agent started
starts it. This module imports only the standard library, so starting it early is cheap.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext

#: Modules the server imports before forking any agent: the agent runtime and the package's own
#: handlers (multiswarm.handlers.DEFAULT_IMPORTS), none of which starts a thread or opens
#: anything at import. A user's modules are not among them: they are imported in each agent.
PRELOAD: tuple[str, ...] = ("multiswarm.agent_runtime", "multiswarm.demo_tasks")


def context() -> ForkServerContext:
    """The multiprocessing context agent processes start in (the server starts on first use)."""
    ctx = multiprocessing.get_context("forkserver")
    assert isinstance(ctx, ForkServerContext)
    ctx.set_forkserver_preload(list(PRELOAD))  # read when the server starts, not after
    return ctx


def start() -> None:
    """Start the server now (and multiprocessing's resource tracker) without waiting for it: its
    imports run while the caller goes on. Nothing if it runs already."""
    context()
    forkserver.ensure_running()


def starts_worker(argv: Sequence[str]) -> bool:
    """Whether the command line ``argv`` (without the program) may be ``run worker``: ``worker``
    somewhere after ``run``. A guess made before the CLI parses it, to start the server early;
    a wrong guess costs an idle server, never a wrong command (the CLI parses as always)."""
    args = list(argv)
    return "run" in args and "worker" in args[args.index("run") + 1 :]
