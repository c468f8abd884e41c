"""Agent processes: where task handlers run.

Each agent is a child process (``spawn``) fed over a pipe, so a handler can burn CPU for minutes,
hold the GIL in C code, or crash, while the worker's event loop keeps heartbeats and lease
renewals on time. A handler that overruns its timeout is killed with its process, which is
replaced. Nothing here blocks that loop: pipe reads and writes run in threads, and stopping or
killing an agent polls for its exit instead of joining it. Handlers are resolved from
``package.module:function`` and must live under one of the worker's allowed prefixes: a task
names code to run, so a hostile task must not pick any import.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from multiswarm.errors import HandlerError, MessageDecodeError
from multiswarm.messages import pack, unpack

log = logging.getLogger(__name__)

#: Handlers importable by default: the package's own (the demo's, the no-op benchmark's).
DEFAULT_ALLOWED = ("multiswarm.",)
#: Longest wait for a SIGKILLed agent process to be reaped, in seconds.
KILL_WAIT_S = 5.0
#: How long a stopped handler may take to unwind (its ``finally`` blocks) before its agent
#: process is killed, in seconds.
STOP_GRACE_S = 2.0
#: Signal that asks an agent to stop the handler it is running (raises TaskStopped in it).
STOP_SIGNAL = signal.SIGUSR1


class TaskStopped(BaseException):
    """Raised inside a handler whose task was cancelled: a BaseException, so a handler's
    ``except Exception`` does not swallow it, while its ``finally`` blocks and context
    managers still run."""


_handling = False


def _stop_handler(signum: int, frame: object) -> None:
    if _handling:
        raise TaskStopped()


class TaskContext(msgspec.Struct, frozen=True):
    """Second argument of every handler.

    Attributes
    ----------
    task_id, attempt:
        Which task and which attempt (1-based) this is.
    dependencies:
        Results of the tasks this one depends on, by task id.
    """

    task_id: str
    attempt: int
    dependencies: dict[str, Any]


def resolve(path: str, allowed: Sequence[str]) -> Callable[..., Any]:
    """Import ``package.module:function`` if it is under an allowed prefix.

    Raises
    ------
    HandlerError
        Malformed path, prefix not allowed, module or attribute missing, not callable.
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise HandlerError(f"handler {path!r} is not 'package.module:function'")
    if not any(path.startswith(p) for p in allowed):
        raise HandlerError(f"handler {path!r} is not under an allowed prefix {list(allowed)}")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise HandlerError(f"handler {path!r} cannot be imported: {e}") from e
    if not callable(fn):
        raise HandlerError(f"handler {path!r} is not callable")
    return fn  # type: ignore[no-any-return]


def _agent_main(conn: Connection, allowed: Sequence[str]) -> None:
    """Child process loop: receive a task, run it, send ``(kind, data)`` back.

    :data:`STOP_SIGNAL` stops the running handler (reply ``("stopped", "")``); the agent then
    takes the next task."""
    global _handling
    signal.signal(STOP_SIGNAL, _stop_handler)
    cache: dict[str, Callable[..., Any]] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):  # the worker went away
            return
        if msg is None:
            return
        task_id, attempt, handler, payload, deps = msg
        reply: tuple[str, Any]
        try:
            fn = cache.get(handler) or cache.setdefault(handler, resolve(handler, allowed))
            ctx = TaskContext(
                task_id=task_id,
                attempt=attempt,
                dependencies={k: unpack(v) for k, v in deps.items()},
            )
            _handling = True
            try:
                result = fn(unpack(payload), ctx)
                if inspect.isawaitable(result):
                    result = asyncio.run(_await(result))
            finally:
                _handling = False
            reply = ("ok", pack(result))
        except TaskStopped:
            reply = ("stopped", "")
        except (HandlerError, MessageDecodeError) as e:
            reply = ("permanent", f"{type(e).__name__}: {e}")
        except Exception as e:  # a handler's bug must not kill the agent
            reply = ("error", "".join(traceback.format_exception(e))[-4000:])
        try:
            conn.send(reply)
        except (BrokenPipeError, EOFError):
            return


async def _await(aw: Any) -> Any:
    return await aw


class AgentProcess:
    """One agent: a child process running one task at a time.

    Parameters
    ----------
    agent_id:
        Id reported in task records and heartbeats.
    allowed:
        Handler import-path prefixes this agent may run.
    """

    def __init__(self, agent_id: str, allowed: Sequence[str] = DEFAULT_ALLOWED) -> None:
        self.agent_id = agent_id
        self.allowed = tuple(allowed)
        self.restarts = 0
        self.failures = 0
        #: True for a member started to replace one that could not be restarted
        self.replacement = False
        #: failures since the last success: the agent's health (see multiswarm.placement)
        self.consecutive_failures = 0
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self.start()

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_agent_main,
            args=(child, self.allowed),
            name=f"agent-{self.agent_id}",
            daemon=True,
        )
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent

    kind = "python"

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    @property
    def pid(self) -> int:
        return (self._proc.pid or 0) if self._proc is not None else 0

    async def run(
        self,
        task_id: str,
        attempt: int,
        handler: str,
        payload: bytes,
        deps: dict[str, bytes],
        timeout_s: float,
    ) -> tuple[str, Any]:
        """Run one task. Returns ``("ok", result bytes)``, ``("error", text)`` (retryable) or
        ``("permanent", text)``. On timeout or a dead process the process is replaced."""
        if not self.alive or self._conn is None:
            return ("error", f"agent {self.agent_id} is not running")
        conn = self._conn
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        fd = conn.fileno()

        def readable() -> None:
            if not done.done():
                done.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await self._in_thread(conn.send, (task_id, attempt, handler, payload, deps))
            await asyncio.wait_for(done, timeout=timeout_s)
            # readable means the reply has begun, not that all of it is here: a large result
            # is read in a thread, so the loop keeps renewing leases meanwhile
            reply: tuple[str, Any] = await self._in_thread(conn.recv)
            if reply[0] == "ok":
                self.consecutive_failures = 0
            elif reply[0] == "error":
                self.failures += 1
                self.consecutive_failures += 1
            return reply
        except asyncio.CancelledError:
            # the task was cancelled (or the worker is shutting down): stop the handler
            await self._stop_handler()
            raise
        except asyncio.TimeoutError:
            # a hung handler cannot be interrupted: its process goes; the supervisor restarts it
            self.failures += 1
            self.consecutive_failures += 1
            await self.kill()
            return ("error", f"timed out after {timeout_s:.1f} s (agent {self.agent_id} killed)")
        except (EOFError, OSError, BrokenPipeError) as e:
            self.failures += 1
            self.consecutive_failures += 1
            await self.kill()
            return ("error", f"agent {self.agent_id} process died: {e!r}")
        finally:
            loop.remove_reader(fd)

    async def _stop_handler(self) -> None:
        """Stop the running handler: cooperatively first (:data:`STOP_SIGNAL` raises
        :class:`TaskStopped` in it, and the agent stays up), then, if it has not answered
        within :data:`STOP_GRACE_S`, by killing the process (the supervisor restarts it)."""
        proc, conn = self._proc, self._conn
        if proc is None or conn is None or not proc.is_alive() or proc.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, STOP_SIGNAL)
        try:
            # poll with a bound, then read: a thread is never left blocked on the pipe
            if await asyncio.to_thread(conn.poll, STOP_GRACE_S):
                reply = await asyncio.to_thread(conn.recv)
                log.info("agent %s stopped its handler (%s)", self.agent_id, reply[0])
                return
        except (EOFError, OSError):
            pass
        log.warning(
            "agent %s did not stop its handler within %.0f s: killed", self.agent_id, STOP_GRACE_S
        )
        await self.kill()

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` (a blocking pipe send or receive) in a thread.

        If the caller is cancelled meanwhile, the child is killed, so the thread's read or write
        ends (EOF, broken pipe) before anyone closes the pipe under it, and only then does the
        cancellation go on.
        """
        work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            if self._proc is not None and self._proc.is_alive():
                self._proc.kill()
            await asyncio.wait([work], timeout=KILL_WAIT_S)
            if work.done() and not work.cancelled():
                work.exception()  # retrieved: it is the expected EOF of a killed child
            raise

    async def restart(self) -> None:
        await self.kill()
        self.restarts += 1
        self.start()

    async def kill(self) -> None:
        """SIGKILL the process and wait (without blocking the event loop) until it is gone."""
        proc, conn = self._proc, self._conn
        self._proc, self._conn = None, None
        if proc is not None and proc.is_alive():
            proc.kill()
            if not await _exited(proc, KILL_WAIT_S):
                log.warning(
                    "agent %s (pid %s) still alive %.0f s after SIGKILL",
                    self.agent_id,
                    proc.pid,
                    KILL_WAIT_S,
                )
        if conn is not None:
            conn.close()

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Ask the child to exit (it does once its current task ends); kill it if it does not
        within ``timeout_s``. The event loop is not blocked meanwhile."""
        proc = self._proc
        if self._conn is not None and proc is not None and proc.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send(None)
            await _exited(proc, timeout_s)
        await self.kill()


async def _exited(proc: multiprocessing.process.BaseProcess, timeout_s: float) -> bool:
    """Poll (``waitpid`` without blocking) until ``proc`` has exited; False on timeout."""
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while proc.is_alive():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(0.05, delay * 2)
    return True
