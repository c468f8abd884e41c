"""Calling the Lua scripts: :class:`Scripts` runs them by name (``FCALL`` of the function library
:mod:`multiswarm.script_library` builds), retrying connection errors with a request id where a
second run would act twice, loading the library again on a server that lost it (a restart without
persistence: the first ``Function not found``), and turning error replies ``"<CODE> <detail>"``
into typed errors.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import redis.exceptions

from multiswarm import errors
from multiswarm.config import Settings
from multiswarm.connection import (
    CONNECTION_ERRORS,
    Client,
    DirectCalls,
    cancel_requested,
    outage,
    socket_timeout_s,
    with_retry,
)
from multiswarm.keys import request_key
from multiswarm.script_library import DURABLE, REQUEST_ID, WAIT_ONCE, function_name, library

log = logging.getLogger(__name__)
T = TypeVar("T")


#: First keys whose request key prefix a :class:`Scripts` keeps (per-swarm keys are many).
REQUEST_BASES = 4096


def _new_request_ids() -> None:
    global _request_prefix, _request_counter
    _request_prefix = os.urandom(8).hex() + "-"
    _request_counter = itertools.count()


_request_prefix = ""
_request_counter = itertools.count()
_new_request_ids()
os.register_at_fork(after_in_child=_new_request_ids)


def request_id() -> str:
    """A request id unique across processes and restarts: 64 random bits drawn once per
    process (again in a forked child) and a counter. Two processes would have to draw the same
    64 bits for two calls to share an id (~n²/2⁶⁵ for n processes whose request keys are alive
    at once); one never repeats one. Cheaper than ``uuid4`` (decision 65)."""
    return f"{_request_prefix}{next(_request_counter):x}"


def _refuses_xread(error: redis.exceptions.ResponseError) -> bool:
    """Whether ``error`` says this server never serves ``XREAD`` to this client (an ACL)."""
    return isinstance(error, redis.exceptions.NoPermissionError) or any(
        s in str(error) for s in ("NOPERM", "no permissions", "unknown command")
    )


def _newest_id(read: Any) -> str | None:
    """The last entry id of an ``XREAD`` reply on one stream (RESP2 ``[[stream, entries]]`` or
    RESP3 ``{stream: entries}``); None when it timed out or read nothing."""
    read = list(read.items()) if isinstance(read, dict) else read
    if not read or not read[0][1]:
        return None
    newest = read[0][1][-1][0]
    return newest.decode() if isinstance(newest, bytes) else str(newest)


def _not_loaded(e: BaseException) -> bool:
    return isinstance(e, redis.exceptions.ResponseError) and "Function not found" in str(e)


_ERRORS: dict[str, type[errors.ScriptError]] = {
    "NOT_FOUND": errors.NotFound,
    "ILLEGAL_TRANSITION": errors.IllegalTransition,
    "ALREADY_EXISTS": errors.AlreadyExists,
    "CAPACITY_EXCEEDED": errors.CapacityExceeded,
    "STALE_EPOCH": errors.StaleEpoch,
    "VERSION_CONFLICT": errors.VersionConflict,
    "UNKNOWN_DEPENDENCY": errors.UnknownDependency,
    "BAD_REQUEST": errors.BadRequest,
    "WORKER_UNKNOWN": errors.WorkerUnknown,
    "NOT_INTERRUPTED": errors.NotInterrupted,
    "STALE_PLAN": errors.StalePlan,
    "RESOURCE_EXHAUSTED": errors.ResourceExhausted,
    "NOT_ELIGIBLE": errors.NotEligible,
}


def translate(exc: redis.exceptions.ResponseError) -> errors.MultiswarmError:
    """Turn a script's error reply into the matching :class:`~multiswarm.errors.ScriptError`."""
    text = str(exc)
    # Redis may prefix the reply with the script location; the code is the first CAPS word.
    words = text.split()
    for i, word in enumerate(words):
        if word in _ERRORS:
            return _ERRORS[word](word, " ".join(words[i + 1 :]))
    return errors.ScriptError("SCRIPT_ERROR", text)


def ack_command(aof: bool, replicas: int, timeout_ms: int) -> list[Any]:
    """The command that waits for ``replicas`` to acknowledge a connection's writes: ``WAITAOF
    0 replicas timeout`` (fsynced to their AOF) when ``aof``, else ``WAIT`` (received)."""
    return ["WAITAOF", 0, replicas, timeout_ms] if aof else ["WAIT", replicas, timeout_ms]


def replicas_acked(reply: Any) -> int:
    """Replicas counted by a ``WAIT`` reply (an integer) or ``WAITAOF`` (``[local, replicas]``)."""
    return int(reply[1]) if isinstance(reply, list) else int(reply)


async def _has_waitaof(client: Any) -> bool:
    version = str((await client.info("server")).get("redis_version", "0"))
    numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if numbers >= (7, 2):
        return True
    log.warning(
        "MULTISWARM_WAIT_AOF: the server is Redis %s and has no WAITAOF (7.2+): waiting with "
        "WAIT, so replicas acknowledge receiving a write, not writing it to disk",
        version,
    )
    return False


class Scripts:
    """The scripts bound to one client: the raw calls under the typed layer.

    Components never call these by name: each script is declared once in :mod:`multiswarm.ops`
    (its reply type, its keys and arguments) and called through a typed function there.

    Parameters
    ----------
    client:
        redis-py asyncio client (or cluster client).
    reconnect_timeout_s:
        How long connection errors are retried with backoff before RedisUnavailable.
    """

    def __init__(
        self,
        client: Client,
        reconnect_timeout_s: float = 60.0,
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
        wait_aof: bool = False,
    ) -> None:
        self.client = client
        self.reconnect_timeout_s = reconnect_timeout_s
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.wait_aof = wait_aof
        #: WAITAOF usable: asked for and the server has it (known after the first durable call)
        self._aof: bool | None = None if wait_aof else False
        #: single calls past execute_command's layers (None: a cluster client)
        self._direct = DirectCalls.for_client(client)
        self._wake_refused = False  #: the server refused call_when_woken's XREAD: not again
        #: longest block a command may ask for (woken calls, waiters): half the socket timeout
        self.block_limit_ms = max(1, int(socket_timeout_s(client) * 500))
        #: script name -> its function's name; first key -> its slot's request key prefix
        self._names: dict[str, str] = {}
        self._request_bases: dict[str, str] = {}

    @classmethod
    def for_settings(cls, client: Client, settings: Settings) -> Scripts:
        """Scripts with the settings' reconnect window and replica acknowledgement."""
        return cls(
            client,
            settings.reconnect_timeout_s,
            wait_replicas=settings.wait_replicas,
            wait_timeout_ms=settings.wait_timeout_ms,
            wait_aof=settings.wait_aof,
        )

    async def load(self) -> None:
        """Load the function library (on every master of a cluster). ``REPLACE``: a library
        of the same name already there is the same code (the name carries its hash), so
        replacing it changes nothing, and no node answers "already exists"."""
        await self.client.function_load(library()[1], replace=True)

    async def call(
        self,
        name: str,
        keys: list[str],
        args: list[Any],
        retry: bool = True,
        *,
        request_key: str | None = None,
    ) -> Any:
        """Run script ``name``; retry connection errors and timeouts (unless ``retry`` is False:
        best-effort callers that would rather drop than wait); translate refusals.

        A script of :data:`REQUEST_ID` gets one request id per call, the same on every retry,
        so a retry after a lost reply or a stall returns the first run's outcome instead of
        acting twice. ``request_key`` (from :meth:`new_request_key`) replays a call made
        before under that key, or runs it now if it never ran.

        Raises
        ------
        ScriptError
            (or a subclass) when the script refused the operation.
        RedisUnavailable
            Redis stayed unreachable for ``reconnect_timeout_s``.
        """
        fname = self._names.get(name) or self._name(name)
        if name in REQUEST_ID:
            keys = [*keys, request_key or self._request_key(keys[0])]
        run = partial(self._run, name, fname, keys, args, retry)
        if not retry:
            return await run()
        return await with_retry(run, self.reconnect_timeout_s, self.client)

    def new_request_key(self, name: str, keys: Sequence[str]) -> str | None:
        """A fresh request key for a call of ``name`` whose first key is ``keys[0]`` (None for
        a script without one), to pass as ``request_key`` so the call can be replayed."""
        return self._request_key(keys[0]) if name in REQUEST_ID else None

    def can_call_when_woken(self, name: str) -> bool:
        """Whether :meth:`call_when_woken` may run ``name``: a plain or Sentinel client (its
        kept connections, :class:`DirectCalls`), and no ``WAIT`` to follow the script."""
        return (
            self._direct is not None
            and not self._wake_refused
            and not (self.wait_replicas and name in DURABLE)
        )

    async def call_when_woken(
        self,
        name: str,
        keys: list[str],
        args: list[Any],
        wake: tuple[str, str, int],
        *,
        request_key: str | None = None,
    ) -> tuple[str | None, Any]:
        """Run script ``name`` once stream ``wake[0]`` has an entry after id ``wake[1]``, or
        after ``wake[2]`` ms (at most :attr:`block_limit_ms`): ``XREAD BLOCK`` and the ``FCALL``
        in one write on a kept connection, so Redis runs the script as the wake-up arrives,
        with no round trip to this process between them (the waiters of
        :func:`multiswarm.tasks_api.wait_for` read the same way). Only where
        :meth:`can_call_when_woken`.

        Returns the newest entry id read (None: the block timed out) and the script's reply.
        A lost connection, a stall or a timeout runs the script again through :meth:`call`
        under the same request key (a script that ran replays its outcome), and returns id
        ``0-0``: a restarted server may have lost the stream, its new ids below the old cursor,
        so the caller reads it from the start (decision 99). A caller interrupted by a
        cancellation replays the script by passing the same key to :meth:`call`.

        Raises as :meth:`call`.
        """
        fname = self._names.get(name) or self._name(name)
        if name in REQUEST_ID:
            keys = [*keys, request_key or self._request_key(keys[0])]
        direct = self._direct
        if direct is None:
            raise errors.ConfigError("call_when_woken needs a plain or Sentinel client")
        stream, cursor, block_ms = wake
        block_ms = max(1, min(block_ms, self.block_limit_ms))
        try:
            read, reply = await direct.call_many(
                ("XREAD", "COUNT", 1, "BLOCK", block_ms, "STREAMS", stream, cursor),
                ("FCALL", fname, len(keys), *keys, *args),
                raise_on_error=False,
            )
        except CONNECTION_ERRORS as e:
            if cancel_requested():  # redis-py reports some cancellations as a lost connection
                raise asyncio.CancelledError() from e
            log.info("woken call of %s interrupted (%s); running it again", name, e)
            run = partial(self._run, name, fname, keys, args, True)
            return "0-0", await with_retry(run, self.reconnect_timeout_s, self.client)
        if isinstance(read, redis.exceptions.ResponseError):
            # the script ran anyway; a refusal (an ACL) holds: PUBLISH wake-ups from now on
            if _refuses_xread(read):
                log.warning("XREAD refused (%s): wake-ups come by PUBLISH instead", read)
                self._wake_refused = True
            else:
                log.warning("the wait for a wake-up failed (%s); %s ran all the same", read, name)
            read = None
        if isinstance(reply, redis.exceptions.ResponseError):
            if not (_not_loaded(reply) or outage(reply)):
                raise translate(reply)
            # it did not run: (loaded and) run, retried as any call (the load may meet an outage)
            run = partial(self._run, name, fname, keys, args, True)
            reply = await with_retry(run, self.reconnect_timeout_s, self.client)
        return _newest_id(read), reply

    def _name(self, name: str) -> str:
        fname = self._names[name] = function_name(name)
        return fname

    def _request_key(self, first_key: str) -> str:
        """A new request key in ``first_key``'s slot: the slot's prefix (made once per first
        key, validated by :func:`request_key`) and a fresh :func:`request_id`."""
        base = self._request_bases.get(first_key)
        if base is None:
            if len(self._request_bases) >= REQUEST_BASES:  # per-swarm keys: keep it bounded
                self._request_bases.clear()
            base = self._request_bases[first_key] = request_key(first_key, "0")[:-1]
        return base + request_id()

    async def _run(
        self, name: str, fname: str, keys: list[str], args: list[Any], patient: bool
    ) -> Any:
        """One attempt of :meth:`call`: the script (loaded again if the server lost it)."""
        try:
            try:
                return await self._once(name, fname, keys, args, patient)
            except redis.exceptions.ResponseError as e:
                if not _not_loaded(e):
                    raise
                await self.load()
                return await self._once(name, fname, keys, args, patient)
        except redis.exceptions.ResponseError as e:
            if outage(e):
                raise  # not run: with_retry runs it again
            raise translate(e) from e

    def _once(
        self, name: str, fname: str, keys: list[str], args: list[Any], patient: bool
    ) -> Awaitable[Any]:
        if self.wait_replicas and name in DURABLE:
            return self._run_durable(fname, keys, args, patient and name not in WAIT_ONCE)
        if self._direct is not None:
            return self._direct.call("FCALL", fname, len(keys), *keys, *args)
        return self.client.fcall(fname, len(keys), *keys, *args)

    async def _run_durable(
        self, fname: str, keys: list[str], args: list[Any], patient: bool
    ) -> Any:
        """The script, then ``WAIT replicas timeout``, on one connection held for the call:
        WAIT covers the writes of its own connection only (a pipeline would be one round trip
        less, but redis-py gives it a pooled connection, and a WAIT again on another connection
        would count replicas of nothing).

        ``patient``: too few acknowledgements are waited for again, on the same connection,
        until ``reconnect_timeout_s`` has passed: during a failover the remaining replicas
        follow the promoted master within seconds, and a role that gave up at the first WAIT
        would stop (its heartbeat loop fails). Otherwise the first shortfall raises.

        Raises
        ------
        ReplicaAckError
            Too few replicas acknowledged in time; the write is on the master (with ``reply``).
        """
        deadline = time.monotonic() + self.reconnect_timeout_s
        async with self.client.client() as conn:
            if self._aof is None:
                self._aof = await _has_waitaof(conn)
            command = ack_command(self._aof, self.wait_replicas, self.wait_timeout_ms)
            reply = await conn.fcall(fname, len(keys), *keys, *args)
            acked = 0
            while acked < self.wait_replicas:
                acked = replicas_acked(
                    await conn.execute_command(*command)  # type: ignore[no-untyped-call]
                )
                if not patient or time.monotonic() >= deadline:
                    break
                if acked < self.wait_replicas:
                    log.warning(
                        "%d of %d replicas acknowledged a write within %d ms; waiting again",
                        acked,
                        self.wait_replicas,
                        self.wait_timeout_ms,
                    )
        if acked < self.wait_replicas:
            raise errors.ReplicaAckError(
                f"{acked} of {self.wait_replicas} replicas acknowledged within "
                f"{self.wait_timeout_ms} ms: the write is on the master only and a failover "
                "now could lose it (MULTISWARM_WAIT_REPLICAS)",
                reply,
            )
        return reply

    async def call_many(self, name: str, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run script ``name`` once per ``(keys, args)`` in one pipelined round trip; each
        reply, or the :class:`~multiswarm.errors.ScriptError` of a refusal, in place.

        Retried as a whole on connection errors, so use it for scripts idempotent per call:
        each call of a :data:`REQUEST_ID` script gets its own request key, made once, and a
        retried round trip replays the recorded outcomes.
        """
        fname = function_name(name)
        sent = [
            [*keys, self._request_key(keys[0])] if name in REQUEST_ID else keys for keys, _ in calls
        ]

        async def fill(pipe: Any) -> None:
            for keys, (_, args) in zip(sent, calls):
                pipe.fcall(fname, len(keys), *keys, *args)  # queued: replies come together

        results = await self.pipelined(fill)
        out: list[Any] = []
        for (keys, args), r in zip(calls, results):
            if _not_loaded(r) or outage(r):  # not run: run alone, retried as any call
                try:
                    r = await self.call(name, keys, args)
                except errors.ScriptError as e:
                    r = e
            elif isinstance(r, redis.exceptions.ResponseError):
                r = translate(r)
            out.append(r)
        return out

    async def pipelined(
        self, fill: Callable[[Any], Awaitable[None]], raise_on_error: bool = False
    ) -> list[Any]:
        """Run one non-transactional pipeline built by ``fill(pipe)``, retrying connection
        errors for ``reconnect_timeout_s`` (so send only reads and idempotent scripts); errors of
        single commands come back in place (``raise_on_error``: the first is raised)."""

        async def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            await fill(pipe)
            result: list[Any] = await pipe.execute(raise_on_error=raise_on_error)
            return result

        return await with_retry(run, self.reconnect_timeout_s, self.client)

    async def read_many(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Plain reads in one round trip, their replies in order, with the same reconnect
        backoff as :meth:`read`; an error reply raises (``ResponseError``). On a kept
        connection (:meth:`DirectCalls.call_many`: raw replies, one write) where the client
        allows, else (cluster) a pipeline, whose replies pass redis-py's response callbacks."""
        direct = self._direct
        if direct is not None:
            return await with_retry(
                partial(direct.call_many, *commands), self.reconnect_timeout_s, self.client
            )

        async def fill(pipe: Any) -> None:
            for command in commands:
                pipe.execute_command(*command)

        return await self.pipelined(fill, raise_on_error=True)

    async def read(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run a plain read (``lambda: client.hget(...)``) with the same reconnect backoff."""
        return await with_retry(fn, self.reconnect_timeout_s, self.client)
