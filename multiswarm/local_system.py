"""A whole local system in separate processes, as ``multiswarm-cli up`` and ``demo`` start it:
registry, two coordinators, a state manager, workers hosting swarms and, optionally, the
operations API; and a Redis to run it on when none is configured."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from multiswarm import demo_tasks
from multiswarm.config import Settings
from multiswarm.connection import ping
from multiswarm.launcher import ProcessGroup, RoleProcess
from multiswarm.redis_server import RedisServer
from multiswarm.roles import agreed
from multiswarm.urls import redact

Echo = Callable[[str], None]

#: Capabilities of the demo's swarms, in order; swarms past the third offer everything.
DEMO_SWARMS = [("parsers", "parse"), ("compressors", "compress"), ("reducers", "reduce+parse")]


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends: a teardown that stops processes and cleans
    the namespace runs to its end, and the first such signal that came meanwhile is raised again
    afterwards, to the handlers there were (found in session 21's review: it cut `demo`'s
    teardown short). Recorded by handlers of its own, not blocked: a process-directed signal
    goes to any thread that does not block it, so a mask of the main thread alone holds
    nothing while other threads run. Main thread only (as every handler)."""
    got: list[int] = []

    def record(signum: int, _frame: object) -> None:
        got.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if got:
            signal.raise_signal(got[0])


@contextlib.contextmanager
def ensure_redis(settings: Settings, echo: Echo) -> Iterator[Settings]:
    """Yield settings pointing at a Redis that answers.

    An explicitly configured URL is used as is. Otherwise localhost:6379 is used when it answers,
    else a private ``redis-server`` is started (loopback, temp dir) and stopped on exit.
    """
    if settings.redis_url_explicit:
        echo(f"Redis: {redact(settings.redis_url)} (configured)")
        yield settings
        return
    if asyncio.run(ping(settings.redis_url)):
        echo(f"Redis: {redact(settings.redis_url)} (found running; nothing configured)")
        yield settings
        return
    server = RedisServer()
    try:  # (a signal while it starts must not leave it running: cleanup takes a half start)
        server.start()
        echo(
            f"Redis: started private {server.binary} at {redact(server.url)} in {server.dir} "
            "(stopped on exit)"
        )
        yield settings.replace(redis_url=server.url)
    finally:
        server.cleanup()


def demo_swarm_args(index: int, agents: int) -> str:
    if index < len(DEMO_SWARMS):
        name, caps = DEMO_SWARMS[index]
    else:
        name, caps = f"mixed{index}", "parse+compress+reduce"
    return f"{name}:{caps}:{agents}"


def start_system(
    settings: Settings,
    *,
    workers: int,
    swarms: int,
    agents: int,
    strategy: str,
    log_dir: Path | None,
    verbose: bool = False,
    corpus: Path | None = None,
    worker_args: Sequence[str] = (),
    user_swarms: Sequence[str] = (),
    api_port: int | None = None,
) -> ProcessGroup:
    """Spawn registry, two coordinators, a state manager and ``workers`` workers hosting
    ``swarms`` swarms (swarm i on worker i mod workers). ``corpus``: the directory the demo's
    map handlers may read (``MULTISWARM_DEMO_CORPUS``); without it they read nothing.
    ``worker_args`` go to every worker (``--allow-handlers myapp.``); ``user_swarms`` are
    ``--swarm`` specs spread over the workers (spec j on worker j mod workers); ``api_port``:
    also the operations API on 127.0.0.1 (``run api``), named ``api``."""
    env = {demo_tasks.CORPUS_ENV: str(corpus.absolute())} if corpus is not None else {}
    # the children get the deployment's timings, so none of them refuses to start over one
    settings = asyncio.run(agreed(settings))
    group = ProcessGroup(settings, log_dir, verbose=verbose, env=env)
    group.spawn("registry", ["registry"])
    for name in ("coordinator-a", "coordinator-b"):
        group.spawn(
            name, ["coordinator", "--id", f"{name}-{uuid.uuid4().hex[:4]}", "--strategy", strategy]
        )
    group.spawn("state-manager", ["state-manager"])
    for w in range(workers):
        extra = list(worker_args)
        for spec in user_swarms[w::workers]:
            extra += ["--swarm", spec]
        spawn_worker(group, w, workers, swarms, agents, f"worker-{w}", extra)
    if api_port is not None:
        group.spawn("api", ["api", "--port", str(api_port)])
    return group


def spawn_worker(
    group: ProcessGroup,
    w: int,
    workers: int,
    swarms: int,
    agents: int,
    name: str,
    extra: Sequence[str] = (),
) -> RoleProcess:
    args = ["worker", "--id", f"{name}-{uuid.uuid4().hex[:4]}"]
    for i in range(w, swarms, workers):
        args += ["--swarm", demo_swarm_args(i, agents)]
    return group.spawn(name, [*args, *extra])


def api_answers(api: RoleProcess, port: int, timeout_s: float = 30.0) -> bool:
    """Wait until the operations API ``api`` (``run api --port port``) answers HTTP on
    127.0.0.1, up to ``timeout_s`` seconds (its imports and first connection take ~1 s, more on
    a loaded machine); False if it exited or did not answer by then. A start-up wait, polled
    every 0.1 s: nothing else is there to wake on."""
    # no proxy: an http_proxy in the environment must not take a loopback request elsewhere
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    while api.alive() and time.monotonic() < deadline:
        try:
            with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return True
        except urllib.error.HTTPError:  # 503 (Redis not reached yet): it answers all the same
            return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    return False
