"""How agent processes start: ``spawn`` by default, or forked by a fork server that a worker
process started first thing, with the agent runtime and handler modules already imported
(decision 68).

``spawn`` makes every agent a new interpreter that imports :mod:`multiswarm.agent_runtime` and
its handler modules itself: ~0.25 s of CPU each, on the path of a worker's first task. A fork
server (:mod:`multiprocessing.forkserver`) pays that once, beside the worker's own imports, and
forks each agent (the first ones, and restarts) in milliseconds. The fork server is a process
of its own, started by ``exec`` before any thread or event loop exists, so each agent still
is a process of its own (a crash takes only it down) and no agent inherits the worker's locks,
sockets or event loop. ``multiswarm-cli run worker`` calls :func:`prestart`; a program that
creates workers itself keeps ``spawn`` unless it calls :func:`prestart` first.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import sys
from collections.abc import Sequence
from multiprocessing.context import ForkServerContext, SpawnContext

#: Comma-separated handler modules the fork server imports beside the runtime (read there).
PRELOAD_ENV = "MULTISWARM_AGENT_PRELOAD"

_context: ForkServerContext | None = None


def start_context() -> SpawnContext | ForkServerContext:
    """The multiprocessing context that starts agent processes."""
    return _context or multiprocessing.get_context("spawn")


def prestart(modules: Sequence[str] = ()) -> None:
    """Start the agents' fork server now (it imports the agent runtime and ``modules`` while
    the caller goes on): agents started from now on are forked by it. Call early, so its
    imports overlap the caller's. A module that fails to import there is imported again by each
    agent (which reports the error as before)."""
    global _context
    if _context is not None:
        return
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `run worker` does: handler modules beside it
    os.environ[PRELOAD_ENV] = ",".join(dict.fromkeys(m for m in modules if m))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["multiswarm.agent_preload"])
    from multiprocessing import forkserver

    try:
        forkserver.ensure_running()
    except OSError:  # no fork server here (e.g. no Unix sockets): agents are spawned
        return
    _context = context
    atexit.register(_stop_server)


def _stop_server() -> None:
    """Stop the fork server and reap it as this process exits, so it does not outlive the
    worker, even briefly (it would exit on its own once it read the closed pipe). Its stop is
    private to multiprocessing (its own tests call it): absent, the server exits by itself."""
    from multiprocessing import forkserver

    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if stop is not None:
        with contextlib.suppress(Exception):
            stop()


def worker_modules(argv: Sequence[str]) -> list[str] | None:
    """The handler modules a ``run worker`` command line names (``--import M``, and
    ``--allow-handlers M:``, a whole module), or None if ``argv`` is not ``run worker``
    (or asks for help). Read before the CLI parses it, so the fork server starts first."""
    args = list(argv)
    at = next((i for i in range(len(args) - 1) if args[i : i + 2] == ["run", "worker"]), -1)
    if at < 0 or {"-h", "--help"} & set(args):
        return None
    modules = []
    rest = args[at + 2 :]
    for i, arg in enumerate(rest):
        name, eq, value = arg.partition("=")
        if name not in ("--import", "--allow-handlers"):
            continue
        if not eq:
            value = rest[i + 1] if i + 1 < len(rest) else ""
        if name == "--import":
            modules.append(value)
        elif value.endswith(":") and ":" not in value[:-1]:
            modules.append(value[:-1])
    return modules
