"""Lua scripts: read once per process from ``scripts/lua``, loaded as one Redis function library.

Each ``<verb>_<noun>.lua`` is one atomic operation; the files of ``lib/`` (helpers and the state
machines) come first, in name order, so the text Redis sees is fixed at load time and never built
from user input. All of it is one function library (``FUNCTION LOAD``, Redis 7): the helpers are
defined once when the library loads, not again on every call as an ``EVALSHA`` script would (13
µs a call, measured: decision 42), and each script is a function called with ``FCALL``. The
library's name carries a hash of its text, so two versions of multiswarm share a server without
replacing each other's functions; a server that lost the library (a restart without
persistence) gets it again on the first ``Function not found``. Error replies
``"<CODE> <detail>"`` become typed errors here.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import cache, partial
from pathlib import Path
from typing import Any, TypeVar

import redis.exceptions

from multiswarm import errors
from multiswarm.config import Settings
from multiswarm.connection import Client, DirectCalls, with_retry
from multiswarm.keys import request_key
from multiswarm.ops import DECLARED
from multiswarm.script_headers import prefetch_arg, prefetch_keys

log = logging.getLogger(__name__)
T = TypeVar("T")


def lua_dir() -> Path:
    """Folder holding the ``.lua`` files: inside the installed package, else the source tree."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "lua", here.parent / "scripts" / "lua"):
        if (candidate / "lib").is_dir():
            return candidate
    raise errors.ConfigError(f"Lua scripts not found next to {here}")


#: Scripts whose outcome is recorded under a request id and replayed on a retry (the prelude's
#: ``with_request_id``): running them twice would act twice (claim, count, book, publish) or
#: answer differently (a replayed submit would say ALREADY_EXISTS). Value: True when the script
#: replays itself from ``REPLAY`` (it records something smaller than its reply). Derived from
#: the declarations in :mod:`multiswarm.ops` (``Script(..., request_id=True)``).
REQUEST_ID: dict[str, bool] = {
    name: s.custom_replay for name, s in sorted(DECLARED.items()) if s.request_id
}

#: Scripts retried without a request id, and why running one twice is harmless
#: (``Script(..., by_nature=...)``).
BY_NATURE: dict[str, str] = {
    name: s.by_nature for name, s in sorted(DECLARED.items()) if not s.request_id
}


#: Scripts whose effect must survive a failover (``Script(..., durable=True)``): with
#: ``wait_replicas`` set they are followed by ``WAIT`` on their own connection.
DURABLE: frozenset[str] = frozenset(name for name, s in DECLARED.items() if s.durable)


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
    process (again in a forked child) and a counter. Two processes would have to draw the
    same 64 bits for two calls to share an id (~n²/2⁶⁵ for n processes whose request keys
    are alive at once); one process never repeats one. Cheaper than ``uuid4`` per call (a
    ``getrandom`` system call and a UUID object): decision 65."""
    return f"{_request_prefix}{next(_request_counter):x}"


def _wrapped(name: str, body: str) -> str:
    """The body of a request-id script inside ``with_request_id`` (lib/01_common.lua)."""
    custom = "true" if REQUEST_ID[name] else "false"
    pre = prefetch_arg(name, body)  # keys read with the request key (decision 83)
    return (
        f"local function request_body()\n{body}\nend\n"
        f"return with_request_id(request_body, {custom}, {pre})\n"
    )


@cache
def _parts() -> tuple[str, dict[str, str]]:
    """The prelude (lib/, in name order) and each script's body (request-id ones wrapped)."""
    root = lua_dir()
    prelude = "\n".join(p.read_text() for p in sorted((root / "lib").glob("*.lua")))
    bodies: dict[str, str] = {}
    for p in sorted(root.glob("*.lua")):
        name, body = p.stem, p.read_text()
        if name in REQUEST_ID:
            body = _wrapped(name, body)
        elif prefetch_keys(name, body):
            raise errors.ConfigError(f"script {name} prefetches keys but has no request id")
        elif name not in BY_NATURE:
            raise errors.ConfigError(f"script {name} does not say why a retry is safe")
        bodies[name] = body
    if missing := sorted(set(DECLARED) - set(bodies)):
        raise errors.ConfigError(f"declared scripts without a .lua file: {missing}")
    return prelude, bodies


def sources() -> dict[str, str]:
    """Script name -> full source (lib prelude + body), each one runnable on its own by
    ``EVAL``; what :func:`library` loads, script by script (for reading and tests).

    Raises
    ------
    ConfigError
        A script has no declaration in :mod:`multiswarm.ops` (so it says neither its reply type
        nor why a retry is safe: every script is retried on connection errors), or a
        declaration has no script.
    """
    prelude, bodies = _parts()
    return {name: prelude + "\n" + body for name, body in bodies.items()}


@cache
def library() -> tuple[str, str]:
    """The function library's name and code: ``KEYS`` and ``ARGV`` are upvalues every
    function sets first (function libraries have no such globals), with the per-call state of
    the prelude (``REPLAY``, ``REQUEST``, ``PREFETCH``), then runs its script's body. Raises
    ConfigError as :func:`sources`."""
    prelude, bodies = _parts()
    digest = hashlib.sha1("\0".join([prelude, *bodies.values()]).encode()).hexdigest()[:12]
    name = f"multiswarm_{digest}"
    parts = [f"#!lua name={name}", "local KEYS, ARGV = {}, {}", prelude]
    for script, body in bodies.items():
        parts.append(
            f"redis.register_function('{name}_{script}', function(keys, args)\n"
            "KEYS, ARGV, REPLAY, PREFETCH = keys, args, nil, nil\n"
            "REQUEST.record, REQUEST.none = nil, nil\n"  # (no table a call: decision 83)
            f"{body}\nend)"
        )
    return name, "\n".join(parts)


def function_name(script: str) -> str:
    """The name ``FCALL`` calls script ``script`` by (raises ConfigError for an unknown one)."""
    if script not in _parts()[1]:
        raise errors.ConfigError(f"no Lua script named {script!r}")
    return f"{library()[0]}_{script}"


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

    async def call(self, name: str, keys: list[str], args: list[Any], retry: bool = True) -> Any:
        """Run script ``name``; retry connection errors and timeouts (unless ``retry`` is False:
        best-effort callers that would rather drop than wait); translate refusals.

        A script of :data:`REQUEST_ID` gets one request id per call, the same on every retry,
        so a retry after a lost reply or a stall returns the first run's outcome instead of
        acting twice.

        Raises
        ------
        ScriptError
            (or a subclass) when the script refused the operation.
        RedisUnavailable
            Redis stayed unreachable for ``reconnect_timeout_s``.
        """
        fname = self._names.get(name) or self._name(name)
        if name in REQUEST_ID:
            keys = [*keys, self._request_key(keys[0])]
        run = partial(self._run, name, fname, keys, args, retry)
        if not retry:
            return await run()
        return await with_retry(run, self.reconnect_timeout_s, self.client)

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
        """One attempt of :meth:`call`: the script (loaded again when the server lost it),
        its refusal translated."""
        try:
            try:
                return await self._once(name, fname, keys, args, patient)
            except redis.exceptions.ResponseError as e:
                if not _not_loaded(e):
                    raise
                await self.load()
                return await self._once(name, fname, keys, args, patient)
        except redis.exceptions.ResponseError as e:
            raise translate(e) from e

    def _once(
        self, name: str, fname: str, keys: list[str], args: list[Any], patient: bool
    ) -> Awaitable[Any]:
        if self.wait_replicas and name in DURABLE:
            return self._run_durable(fname, keys, args, patient=patient)
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
            Fewer replicas than ``wait_replicas`` acknowledged in time: the write is on the
            master and may be lost at a failover (it is not undone).
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
                "now could lose it (MULTISWARM_WAIT_REPLICAS)"
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
            if _not_loaded(r):
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
