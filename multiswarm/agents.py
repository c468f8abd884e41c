"""Agent processes: where task handlers run.

Each agent is a child process (``spawn``, or forked by the fork server ``run worker`` starts first:
decision 68) fed over a pipe, so a handler can burn CPU for minutes, hold the GIL in C code, or
crash, while the worker's event loop keeps heartbeats and lease renewals on time. An agent runs up
to ``concurrency`` tasks at once (what runs inside is :mod:`multiswarm.agent_runtime`); replies
carry their task id and the event loop reads them when the pipe is readable (no thread). Stopping
one task stops only its handler, cooperatively; if it does not unwind within :data:`STOP_GRACE_S`
the process is killed, and its other runs end ``lost`` so the worker hands their tasks back (their
attempt not counted). A process that dies by itself fails every run it held (counted: one of them
may be the cause). Nothing here blocks the loop: large pipe writes run in threads, reads take what
the pipe holds, and stopping or killing an agent polls for its exit instead of joining it. A task
names its handler (``package.module:function``): an agent runs it only if it is registered
(:mod:`multiswarm.handlers`, from the modules the worker imports) or, opted in, under one of the
worker's allowed prefixes; a task names code to run, so a hostile task must not pick any import.
Any other name is refused (``refused``: the worker hands the task back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from multiswarm.agent_channel import EXPIRED, Channel, blocked_why, expire
from multiswarm.agent_runtime import (
    DEFAULT_ALLOWED,
    STOP_SIGNAL,
    ShmRef,
    agent_main,
    resolve,
)
from multiswarm.agent_slots import TaskStopped
from multiswarm.agent_start import start_context
from multiswarm.errors import InvalidArgumentError
from multiswarm.handlers import DEFAULT_IMPORTS
from multiswarm.task_context import TaskContext

__all__ = [
    "DEFAULT_ALLOWED",
    "DEFAULT_IMPORTS",
    "KILL_WAIT_S",
    "STOP_GRACE_S",
    "STOP_SIGNAL",
    "AgentProcess",
    "TaskContext",
    "TaskStopped",
    "resolve",
]

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Longest wait for a SIGKILLed agent process to be reaped, in seconds.
KILL_WAIT_S = 5.0
#: How long a stopped handler may take to unwind (its ``finally`` blocks) before its agent
#: process is killed, in seconds.
STOP_GRACE_S = 2.0
#: Task inputs up to this size are written to the pipe from the event loop's thread (the agent
#: reads its pipe at all times); larger ones from a thread, so the loop never waits on a pipe.
INLINE_SEND_BYTES = 2048


class AgentProcess:
    """One agent: a child process running up to ``concurrency`` tasks at once.

    Parameters
    ----------
    agent_id:
        Id reported in task records and heartbeats.
    allowed:
        Handler import-path prefixes this agent may run besides the registered handlers.
    concurrency:
        Most tasks running at once in the process: async handlers share its event loop, sync
        handlers its pool of that many threads (:mod:`multiswarm.agent_runtime`). 1 runs each
        handler in the main thread, where a signal can stop it even in a system call.
    imports:
        Modules the process imports first, registering their handlers (``@multiswarm.handler``).
    start:
        Start the process now (else :meth:`start` does, e.g. from a thread: decision 68).
    """

    def __init__(
        self,
        agent_id: str,
        allowed: Sequence[str] = DEFAULT_ALLOWED,
        concurrency: int = 1,
        imports: Sequence[str] = DEFAULT_IMPORTS,
        *,
        start: bool = True,
        on_progress: Callable[[str, Any], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise InvalidArgumentError(f"agent concurrency must be >= 1, not {concurrency}")
        self.agent_id = agent_id
        self.allowed = tuple(allowed)
        self.concurrency = concurrency
        self.imports = tuple(imports)
        self.restarts = 0
        self.failures = 0
        #: True for a member started to replace one that could not be restarted
        self.replacement = False
        #: failures since the last success: the agent's health (see multiswarm.placement)
        self.consecutive_failures = 0
        self._channel: Channel | None = None
        #: ``(task_id, (fraction, note))`` of each progress report of a run (TaskContext.progress)
        self.on_progress = on_progress
        if start:
            self.start()

    def start(self) -> None:
        ctx = start_context()
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=agent_main,
            args=(child, self.allowed, self.concurrency, self.imports),
            name=f"agent-{self.agent_id}",
            daemon=True,
        )
        proc.start()
        child.close()
        self._channel = Channel(proc, parent, self.on_progress)

    kind = "python"

    @property
    def alive(self) -> bool:
        ch = self._channel
        return ch is not None and not ch.ended and (ch.watch.running() or ch.proc.is_alive())

    @property
    def pid(self) -> int:
        return (self._channel.proc.pid or 0) if self._channel is not None else 0

    async def run(
        self,
        task_id: str,
        attempt: int,
        handler: str,
        payload: bytes | ShmRef,
        deps: Mapping[str, bytes | ShmRef],
        timeout_s: float,
    ) -> tuple[str, Any]:
        """Run one task beside the others this agent runs.

        ``payload`` and each of ``deps`` are packed bytes, or a :data:`ShmRef` to them in the
        worker's shared-memory pool (the agent reads them there; they must stay until this
        returns).

        Returns
        -------
        tuple
            ``("ok", result bytes)``, ``("error", text)`` (retryable: the handler raised, timed
            out, or the process died under it), ``("permanent", text)``, ``("refused", text)``
            (the handler is not registered or allowed here: hand it back), or ``("lost", text)``:
            the worker killed the process to stop another of its tasks, so this one never
            finished through no fault of its own (hand it back).

        Raises
        ------
        asyncio.CancelledError
            The run was cancelled (``stop_task``, shutdown): its handler was stopped first,
            cooperatively or, after :data:`STOP_GRACE_S`, with the process.
        """
        ch = self._channel
        # a dead process ends its pipe: once the loop listens, that is the liveness check
        if ch is None or ch.ended or (ch.loop is None and not ch.proc.is_alive()):
            return ("error", f"agent {self.agent_id} is not running")
        loop = asyncio.get_running_loop()
        ch.listen(loop)
        future: asyncio.Future[tuple[str, Any]] = loop.create_future()
        ch.pending[task_id] = future
        timer: asyncio.TimerHandle | None = None
        try:
            try:
                msg = ("run", task_id, attempt, handler, payload, dict(deps))
                size = sum(len(d) for d in (payload, *deps.values()) if isinstance(d, bytes))
                if size > INLINE_SEND_BYTES:
                    await self._in_thread(ch, ch.out.post_waiting, msg)
                else:
                    ch.post(msg)
                # a timer that resolves the future, rather than wait_for: no task per run
                timer = loop.call_later(timeout_s, expire, future)
                reply = await future
            except asyncio.CancelledError:
                # the task was cancelled (or the worker is shutting down): stop the handler
                await _to_the_end(self._stop(ch, task_id))
                raise
            except (EOFError, OSError) as e:  # the threaded send broke
                self.failures += 1
                self.consecutive_failures += 1
                await self.kill(f"the pipe of task {task_id} broke")
                return ("error", f"agent {self.agent_id} process died: {e!r}")
            finally:
                if timer is not None:
                    timer.cancel()
            if reply is not EXPIRED:
                if reply[0] == "ok":
                    self.consecutive_failures = 0
                elif reply[0] == "error":
                    self.failures += 1
                    self.consecutive_failures += 1
                return reply
            # stopped as a cancel stops it, so its `finally` blocks run (a signal at concurrency
            # 1): a handler deaf to it past STOP_GRACE_S goes with its process (decision 127)
            stopped = await _to_the_end(self._stop(ch, task_id))
            if not stopped:
                await _to_the_end(self.kill(f"task {task_id} timed out"))
            if not stopped and ch.blocker not in ("", task_id):
                # another run's async handler held the loop this one's stop waited for: that run
                # is charged (Channel.end_runs), and this one goes back uncounted (decision 125)
                return ("lost", f"agent {self.agent_id} killed: task {ch.blocker} blocked it")
            self.failures += 1
            self.consecutive_failures += 1
            if not stopped and ch.blocker:
                why = blocked_why(f"task {task_id} timed out")
                return ("error", f"timed out after {timeout_s:.1f} s: {why}")
            how = "stopped" if stopped else f"agent {self.agent_id} killed"
            return ("error", f"timed out after {timeout_s:.1f} s ({how})")
        finally:
            ch.pending.pop(task_id, None)

    async def _stop(self, ch: Channel, task_id: str) -> bool:
        """Stop the handler of ``task_id``: cooperatively first (it gets :class:`TaskStopped`
        or a cancellation, and the agent stays up), then, if it has not answered within
        :data:`STOP_GRACE_S`, by killing the process (the supervisor restarts it; the agent's
        other runs end ``lost``). True if it stopped cooperatively (or had already ended), not
        when its process died meanwhile."""
        future = ch.waiter(task_id)
        if future.done():
            return not ch.ended
        if not ch.proc.is_alive() or ch.proc.pid is None:
            return False
        try:
            if self.concurrency == 1:
                reply = await _signal_stop(ch.proc.pid, future)
            else:
                ch.post(("stop", task_id))
                reply = await asyncio.wait_for(asyncio.shield(future), timeout=STOP_GRACE_S)
            log.info("agent %s stopped the handler of %s (%s)", self.agent_id, task_id, reply[0])
            return reply[0] != "lost" and not ch.ended
        except (ProcessLookupError, OSError, asyncio.TimeoutError):
            pass
        log.warning(
            "agent %s did not stop the handler of %s within %.0f s: killed",
            self.agent_id,
            task_id,
            STOP_GRACE_S,
        )
        await self.kill(f"killed to stop task {task_id}")
        return False

    async def _in_thread(self, ch: Channel, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` (a blocking pipe send) in a thread.

        If the caller is cancelled meanwhile, the child is killed, so the thread's write ends
        (broken pipe) before anyone closes the pipe under it (a half-written message would
        corrupt the stream for the agent's other runs anyway), and only then does the
        cancellation go on.
        """
        work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            ch.killed = ch.killed or "a send to it was interrupted"
            if ch.proc.is_alive():
                kill_group(ch.proc)
            await asyncio.wait([work], timeout=KILL_WAIT_S)
            if work.done() and not work.cancelled():
                work.exception()  # retrieved: it is the expected EOF of a killed child
            raise

    async def restart(self) -> None:
        await self.kill("restarted")
        self.restarts += 1
        self.start()

    async def kill(self, why: str = "killed") -> None:
        """SIGKILL the process and wait (without blocking the event loop) until it is gone.

        Its runs still waiting end ``("lost", why)``: the worker hands their tasks back."""
        ch, self._channel = self._channel, None
        if ch is None:
            return
        ch.killed = ch.killed or f"agent {self.agent_id} {why}"
        proc = ch.proc
        if proc.is_alive():
            kill_group(proc)
            if not await _exited(proc, KILL_WAIT_S):
                log.warning(
                    "agent %s (pid %s) still alive %.0f s after SIGKILL",
                    self.agent_id,
                    proc.pid,
                    KILL_WAIT_S,
                )
        ch.drain()  # the replies it sent before it went
        ch.end_runs()  # also when nothing listened
        ch.conn.close()

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Ask the child to exit (it does once its running tasks end); kill it if it does not
        within ``timeout_s``. The event loop is not blocked meanwhile."""
        ch = self._channel
        if ch is not None and ch.proc.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                ch.out.post(None)  # the pipe busy: its holder sends it
            await _exited(ch.proc, timeout_s)
        await self.kill("stopped")


def kill_group(proc: Any) -> None:
    """SIGKILL agent ``proc`` and what its handlers started: an agent leads a process group of
    its own (``agent_main``), which its handlers' subprocesses join, so none outlives the kill
    (a timeout at concurrency 1, a stop that did not take: decision 124). An agent that has not
    made its group yet is killed alone."""
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
            return
    except ProcessLookupError:
        return
    proc.kill()


#: Pause between two stop signals to an agent of concurrency 1, in seconds.
STOP_RESIGNAL_S = 0.2


async def _signal_stop(pid: int, future: asyncio.Future[tuple[str, Any]]) -> tuple[str, Any]:
    """Signal :data:`STOP_SIGNAL` to the agent ``pid`` until its reply or :data:`STOP_GRACE_S`.

    The agent ignores the signal while no handler runs, so that one sent as a task ends cannot
    stop the next; one that lands before the handler starts (the run still in the pipe, its
    module importing) is ignored too, and only a signal sent again reaches it. Raises
    TimeoutError when the grace passes, ProcessLookupError when the agent is gone.
    """
    deadline = time.monotonic() + STOP_GRACE_S
    while True:
        os.kill(pid, STOP_SIGNAL)
        left = deadline - time.monotonic()
        try:
            return await asyncio.wait_for(asyncio.shield(future), min(STOP_RESIGNAL_S, left))
        except asyncio.TimeoutError:
            if time.monotonic() >= deadline:
                raise


async def _to_the_end(aw: Awaitable[T]) -> T:
    """``aw`` awaited to its end even when the caller is cancelled meanwhile, and the
    cancellation raised after it: a stop (or a kill) cut short by a second cancellation (a
    second stop of the task, a stop during its timeout's) would leave a deaf handler running in
    an agent whose slot the worker frees (found in review)."""
    future = asyncio.ensure_future(aw)
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled = cancelled or not future.cancelled()
    if cancelled:
        raise asyncio.CancelledError
    return future.result()


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
