"""Inside an agent process: receive tasks over the pipe, run their handlers, send back results.

The worker side is :class:`multiswarm.agents.AgentProcess`. Messages are tuples, several to a
pipe message (:mod:`multiswarm.agent_pipe`), in order:

* worker -> agent: ``("run", task_id, attempt, handler, payload, deps)`` (the payload and each
  dependency result either packed bytes or, when large, a :data:`ShmRef` to their place in the
  worker's shared-memory region pool, read there without a copy through the pipe),
  ``("stop", task_id)`` (concurrent agents only) and ``None`` (exit once idle);
* agent -> worker: ``(task_id, kind, data)`` with ``kind`` one of ``ok`` (data: the packed
  result), ``error`` (retryable; data: the traceback), ``permanent`` (data: why), ``refused``
  (the handler is not registered here; data: why) and ``stopped``; and two notices that end
  no run, ``blocked`` (this async run holds the event loop a stop waits for) and ``unblocked``
  (task id empty: the loop turned again; :func:`multiswarm.agent_slots.name_the_blocker`), and
  ``progress`` (data: ``(fraction, note)``, :meth:`TaskContext.progress`).

An agent of concurrency 1 runs one handler at a time in its main thread, and a stop is the
signal :data:`STOP_SIGNAL`: the handler gets :class:`TaskStopped` even while blocked in a system
call (a ``time.sleep``). An agent of concurrency ``c > 1`` runs an event loop in its main
thread: async handlers are tasks on it, sync handlers run on ``c + 1`` slot threads, one of
which reads the pipe (:mod:`multiswarm.agent_threads`); each sends its own replies. A signal
cannot pick one of several threads, so a stop names its task: an async handler is cancelled
(``CancelledError`` inside it), a sync one gets :class:`TaskStopped` raised in its own thread
(``PyThreadState_SetAsyncExc``), which takes effect at its next Python instruction. A sync
handler blocked in C code does not see it; the worker then kills the agent after its grace
(:data:`multiswarm.agents.STOP_GRACE_S`) and hands the agent's other tasks back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
import os
import select
import signal
import threading
import traceback
from collections.abc import Awaitable, Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any, cast

from multiswarm.agent_pipe import Frames, Outbox
from multiswarm.agent_slots import (
    Slot,
    TaskStopped,
    call_in_slot,
    clock_ticks,
    end_what_it_left,
    name_the_blocker,
    raise_in_thread,
)
from multiswarm.agent_threads import SlotThreads
from multiswarm.errors import HandlerError, HandlerNotRegistered, MessageDecodeError
from multiswarm.handlers import import_handlers, registered
from multiswarm.messages import pack, unpack
from multiswarm.task_context import TaskContext, report_to

#: Import-path prefixes allowed by default: none, only registered handlers run
#: (:mod:`multiswarm.handlers`); ``--allow-handlers PREFIX`` opts in to a prefix.
DEFAULT_ALLOWED: tuple[str, ...] = ()
#: Signal that asks an agent of concurrency 1 to stop the handler it runs (TaskStopped in it).
STOP_SIGNAL = signal.SIGUSR1
#: Replies up to this size may be written by whichever thread holds the pipe, the event loop's
#: included; larger ones only by their own thread (a slot thread, or one started for it), so a
#: worker slow to read cannot stall the agent's loop. Bytes.
INLINE_SEND_BYTES = 2048


def resolve(path: str, allowed: Sequence[str]) -> Callable[..., Any]:
    """The handler a task names: registered in this process (:func:`multiswarm.handler`), else
    imported from ``package.module:function`` if it is under an allowed prefix.

    Raises
    ------
    HandlerNotRegistered
        Neither registered nor under an allowed prefix: this worker refuses to run it.
    HandlerError
        Malformed path, module or attribute missing under an allowed prefix, not callable.
    """
    fn = registered(path)
    if fn is not None:
        return fn
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise HandlerError(f"handler {path!r} is not 'package.module:function'")
    if not any(path.startswith(p) for p in allowed):
        hint = f" nor under an allowed prefix {list(allowed)}" if allowed else ""
        raise HandlerNotRegistered(
            f"handler {path!r} is not registered{hint}: decorate {attr} with "
            f"@multiswarm.handler in {module_name} and start the worker with "
            f"--import {module_name} (or allow its prefix with --allow-handlers)"
        )
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise HandlerError(f"handler {path!r} cannot be imported: {e}") from e
    if not callable(fn):
        raise HandlerError(f"handler {path!r} is not callable")
    return fn  # type: ignore[no-any-return]


#: Where packed bytes wait in a worker's shared-memory pool: ``("shm", segment, offset, size)``.
ShmRef = tuple[str, str, int, int]


class _Handlers:
    """Resolved handlers by path, attached shared-memory segments, and the context of a run."""

    def __init__(self, allowed: Sequence[str]) -> None:
        self.allowed = tuple(allowed)
        self.cache: dict[str, Callable[..., Any]] = {}
        self.segments: dict[str, SharedMemory] = {}

    def unpack(self, data: bytes | ShmRef) -> Any:
        """Decode packed bytes, or the bytes a :data:`ShmRef` points at, in place."""
        if isinstance(data, bytes):
            return unpack(data)
        _kind, name, offset, size = data
        segment = self.segments.get(name)
        if segment is None:
            # Attaching registers the name with the resource tracker this process shares with
            # the worker (spawn passes it on): a no-op, and nothing is unlinked when it exits.
            segment = self.segments[name] = SharedMemory(name=name)
        buf = segment.buf
        assert buf is not None  # None only after close(), which only this object calls
        view = buf[offset : offset + size]
        try:
            return unpack(cast(bytes, view))  # msgspec decodes any buffer, without a copy
        finally:
            view.release()

    def prepare(self, msg: tuple[Any, ...]) -> tuple[Callable[..., Any], Any, TaskContext]:
        """``(handler, input, context)`` of a ``run`` message. Raises HandlerError,
        MessageDecodeError."""
        _op, task_id, attempt, handler, payload, deps = msg
        fn = self.cache.get(handler) or self.cache.setdefault(
            handler, resolve(handler, self.allowed)
        )
        ctx = TaskContext(
            task_id=task_id,
            attempt=attempt,
            dependencies={k: self.unpack(v) for k, v in deps.items()},
        )
        return fn, self.unpack(payload), ctx


def _failure(e: BaseException) -> tuple[str, str]:
    if isinstance(e, HandlerNotRegistered):
        return ("refused", str(e))
    if isinstance(e, (HandlerError, MessageDecodeError)):
        return ("permanent", f"{type(e).__name__}: {e}")
    return ("error", "".join(traceback.format_exception(e))[-4000:])


def _left_to_the_worker(signum: int, frame: object) -> None:
    """SIGINT and SIGTERM in an agent: nothing. A handler, not ``SIG_IGN``, which the
    handler's own subprocesses would inherit across ``exec``."""


def _exit_with_the_worker(conn: Connection) -> None:
    """End this agent when its worker is gone: an orphan's task runs again elsewhere, and its
    handler would go on beside it (decision 122). A daemon thread waits, without reading, for
    the worker's end of the pipe (a socket pair) to close (``POLLRDHUP``): the worker alone
    holds it, and the kernel closes it when the worker dies. (Not the parent process: agents
    are forked by the fork server, which lives as long as they do.)"""
    hangup = getattr(select, "POLLRDHUP", 0)
    if not hangup:  # (not Linux: no watch)
        return
    fd = conn.fileno()

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, hangup)
        while True:
            for _, events in poller.poll():
                if events & select.POLLNVAL:
                    return  # this agent closed the pipe itself: it is ending
                if events & (hangup | select.POLLHUP | select.POLLERR):
                    if os.getpgrp() == os.getpid():  # its handlers' children too
                        os.killpg(0, signal.SIGKILL)
                    os._exit(1)

    threading.Thread(target=watch, name="agent-worker-watch", daemon=True).start()


def agent_main(
    conn: Connection, allowed: Sequence[str], concurrency: int = 1, imports: Sequence[str] = ()
) -> None:
    """Entry point of an agent process (``spawn``): import the handler modules ``imports``
    (registering their handlers), then serve ``conn`` until ``None`` or EOF.

    Ctrl-C and a service manager's SIGTERM reach the whole process group, agents included;
    only the worker stops its agents (its drain lets running tasks finish within its grace,
    then hands the rest back uncounted), so agents let them pass (decision 122). An agent
    whose worker died ends itself."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _left_to_the_worker)
    # first: a stop signal that came while the handler modules import would otherwise kill
    # the agent by its default action (a timeout sends one at once since decision 127)
    signal.signal(STOP_SIGNAL, _stop_handler)
    with contextlib.suppress(OSError):  # a group of its own, which its handlers' children join
        os.setpgid(0, 0)  # (the worker kills the group: decision 124)
    _exit_with_the_worker(conn)
    with contextlib.suppress(KeyboardInterrupt):
        # the worker imported them already, so a failure here is rare (a module that changed
        # on disk): the agent serves on and refuses those handlers, each task says why
        with contextlib.suppress(HandlerError):
            import_handlers(imports)
        if concurrency <= 1:
            _serve_serially(conn, _Handlers(allowed))
        else:
            asyncio.run(_Server(conn, _Handlers(allowed), concurrency).serve())


_handling = False


def _stop_handler(signum: int, frame: object) -> None:
    """Raise TaskStopped in the running handler, once a run: the worker signals again until
    the agent replies (a signal that landed before the handler started is lost), and a second
    one must not cut the handler's ``finally`` short (found in session 21's review)."""
    global _handling
    if _handling:
        _handling = False
        raise TaskStopped()


def _serve_serially(conn: Connection, handlers: _Handlers) -> None:
    """One task at a time in the main thread; :data:`STOP_SIGNAL` stops it."""
    global _handling
    out, frames = Outbox(conn), Frames(conn.fileno())
    report_to(out.post)
    while True:
        try:
            batch = frames.read()
        except (OSError, ValueError):
            batch = None
        if batch is None:  # the worker went away
            return
        for msg in batch:
            if msg is None:
                return
            if msg[0] != "run":
                continue  # a stop that came after its task ended
            reply: tuple[str, Any]
            began = clock_ticks()
            try:
                fn, payload, ctx = handlers.prepare(msg)
                _handling = True
                try:
                    result = fn(payload, ctx)
                    if inspect.isawaitable(result):
                        result = asyncio.run(_await(result))
                finally:
                    _handling = False
                reply = ("ok", pack(result))
            except TaskStopped:
                reply = ("stopped", "")
                end_what_it_left(began)
            except Exception as e:  # a handler's bug must not kill the agent
                reply = _failure(e)
            try:
                out.post((msg[1], *reply))
            except (BrokenPipeError, EOFError, OSError):
                return


async def _await(aw: Any) -> Any:
    return await aw


#: A run for the event loop: task id, slot, and what makes the awaitable to run.
_AsyncRun = tuple[str, Slot, Callable[[], Awaitable[Any]]]


class _Server:
    """Up to ``concurrency`` tasks at once: sync handlers on slot threads
    (:mod:`multiswarm.agent_threads`: one of them reads the pipe and, the others idle, runs the
    run it read itself), async ones on this process's event loop, handed every async run of a
    read at once. Replies go through one :class:`~multiswarm.agent_pipe.Outbox`, from the
    thread that has them."""

    def __init__(self, conn: Connection, handlers: _Handlers, concurrency: int) -> None:
        self.conn, self.handlers, self.concurrency = conn, handlers, concurrency
        self.out = Outbox(conn)
        report_to(self.out.post)
        self.frames = Frames(conn.fileno())
        self.slots: dict[str, Slot] = {}
        self.threads = SlotThreads(concurrency, self._lead, TaskStopped)

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.ended = asyncio.Event()
        self.threads.start()
        await self.ended.wait()
        # asked to exit (or the worker went away): the tasks still running finish first
        # emptied by slot threads too: polled, on the way out only
        while self.slots:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        with contextlib.suppress(BrokenPipeError, EOFError, OSError):
            await asyncio.to_thread(self.out.post_waiting)  # what a holder may have left

    def _lead(self) -> Callable[[], Any] | None:
        """The reader role: read until a sync run is this thread's to run (returned: the role
        went to an idle thread) or the pipe ends."""
        try:
            while (batch := self.frames.read()) is not None:
                later: list[_AsyncRun] = []
                jobs: list[Callable[[], None]] = []
                for msg in batch:
                    if msg is None:
                        break
                    if msg[0] == "run":
                        job = self._start(msg, later)
                        if job is not None:
                            jobs.append(job)
                    elif msg[0] == "stop":
                        self._stop(msg[1])
                if later:
                    self.loop.call_soon_threadsafe(self._start_async, later)
                if jobs and self.threads.dispatch(jobs, None not in batch):
                    return jobs[0]
                if None in batch:
                    break
        except (OSError, ValueError):
            pass
        with contextlib.suppress(RuntimeError):  # the loop may be closing
            self.loop.call_soon_threadsafe(self.ended.set)
        return None

    def _start(self, msg: tuple[Any, ...], later: list[_AsyncRun]) -> Callable[[], None] | None:
        """The job of a sync run (None: an async one, added to ``later``, or a failed one)."""
        task_id = msg[1]
        try:
            fn, payload, ctx = self.handlers.prepare(msg)
        except Exception as e:
            self._reply(task_id, _failure(e))
            return None
        on_loop = inspect.iscoroutinefunction(fn)
        slot = self.slots[task_id] = Slot(on_loop)
        if on_loop:
            later.append((task_id, slot, functools.partial(fn, payload, ctx)))
            return None
        return functools.partial(self._run_sync, task_id, slot, fn, payload, ctx)

    def _stop(self, task_id: str) -> None:
        slot = self.slots.get(task_id)
        if slot is None:
            return  # it already ended; its reply is on its way
        with slot.lock:
            slot.stopping = True
            if slot.thread is not None:
                raise_in_thread(slot.thread, TaskStopped)
                return
            task = slot.task
        # not in a slot thread: awaiting (an async handler), cancel it there; not started yet:
        # its slot thread or the loop sees ``stopping`` first
        if task is not None:
            self.loop.call_soon_threadsafe(task.cancel)
        if slot.on_loop:  # its stop waits for the loop: a handler blocking it is named
            name_the_blocker(self.loop, self.slots, self.out.post)

    def _run_sync(
        self, task_id: str, slot: Slot, fn: Callable[..., Any], payload: Any, ctx: TaskContext
    ) -> None:
        reply: tuple[str, Any]
        try:
            result = call_in_slot(slot, fn, payload, ctx)
            if inspect.isawaitable(result):
                aw: Awaitable[Any] = result
                slot.on_loop = True
                self.loop.call_soon_threadsafe(self._start_async, [(task_id, slot, lambda: aw)])
                return
            reply = ("ok", pack(result))
        except TaskStopped:
            reply = ("stopped", "")
        except BaseException as e:  # a handler's bug must not kill the agent nor its thread
            reply = _failure(e)
        self._reply(task_id, reply)

    def _reply(self, task_id: str, reply: tuple[str, Any]) -> None:
        """Send a reply: a small one without waiting for the pipe (from any thread), a large
        one waiting for it (so never from the event loop's thread); then forget the task."""
        try:
            if len(reply[1]) <= INLINE_SEND_BYTES:
                self.out.post((task_id, *reply))
            else:
                self.out.post_waiting((task_id, *reply))
        except (BrokenPipeError, EOFError, OSError):
            pass  # the worker went away; the reader ends the loop
        finally:
            self.slots.pop(task_id, None)

    def _start_async(self, runs: list[_AsyncRun]) -> None:
        for task_id, slot, make in runs:
            with slot.lock:
                if not slot.stopping:
                    slot.task = self.loop.create_task(self._run_async(task_id, make))
                    continue
            self._reply(task_id, ("stopped", ""))  # small: sent without waiting

    async def _run_async(self, task_id: str, make: Callable[[], Awaitable[Any]]) -> None:
        reply: tuple[str, Any]
        try:
            reply = ("ok", pack(await make()))
        except (TaskStopped, asyncio.CancelledError):
            reply = ("stopped", "")
        except Exception as e:  # a handler's bug must not kill the agent
            reply = _failure(e)
        if len(reply[1]) <= INLINE_SEND_BYTES:
            self._reply(task_id, reply)
        else:
            await asyncio.to_thread(self._reply, task_id, reply)
