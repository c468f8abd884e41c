"""Circuit breakers shared through Redis: every process sees one state per breaker.

A breaker guards calls to something that may fail (a model endpoint, a tool, a peer swarm).
States and rules (``docs/resilience.md``), each transition one Lua script on the server clock:

- ``closed``: calls pass; ``failure_threshold`` (5) consecutive failures open it.
- ``open``: calls are refused with :class:`~multiswarm.errors.CircuitOpenError`; after
  ``open_ms`` (30 s) the next call asking permission moves it to ``half_open``.
- ``half_open``: exactly ``half_open_calls`` (3) trial calls are admitted (an atomic permit
  counter); ``success_threshold`` (3) successes close it, any failure reopens it. Trial calls
  unreported for ``trial_timeout_ms`` (30 s) count as a failure, so a crashed caller cannot hold
  the breaker half-open forever.

Each permit carries the breaker's generation (bumped on every transition and reset): the outcome
of a call admitted under an earlier state is ignored. Usage::

    breakers = BreakerRegistry(scripts, keys)
    llm = await breakers.get_or_create("llm-api")
    async with llm.protect():          # raises CircuitOpenError when refused
        await call_the_model()

    @llm                               # the same, as a decorator of a coroutine function
    async def ask(prompt: str) -> str: ...
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal, ParamSpec, TypeVar

import msgspec

from multiswarm.errors import CircuitOpenError, ConfigError, MessageDecodeError, NotFound
from multiswarm.keys import Keys, check_id
from multiswarm.ops import breakers as ops
from multiswarm.ops.script import decode
from multiswarm.scripts import Scripts

P = ParamSpec("P")
T = TypeVar("T")

#: Breaker states, in the order the CLI lists them.
BREAKER_STATES = ("closed", "open", "half_open")

Outcome = Literal["success", "failure", "release"]

#: Largest threshold or duration (ms, about 31 years): Lua's cjson writes numbers with 14
#: significant digits, so stored values stay below 1e14 to keep them exact integers.
MAX_SETTING = 10**12

#: Bytes of a failure's text kept as ``last_error``.
MAX_ERROR_BYTES = 200


class BreakerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Thresholds of one breaker; the defaults are the original system's (DESIGN.md).

    Stored with the breaker when it is created; the stored values are the ones every process
    uses (a later ``get_or_create`` with other values does not change them).

    Attributes
    ----------
    failure_threshold:
        Consecutive failures that open a closed breaker (5).
    success_threshold:
        Trial successes that close a half-open breaker (3); at most ``half_open_calls``.
    open_ms:
        Time open before the next call is let through as a trial, ms (30 000).
    half_open_calls:
        Trial calls admitted while half-open (3).
    trial_timeout_ms:
        A trial call unreported this long counts as a failure, ms (30 000).

    Raises
    ------
    ConfigError
        A value outside [1, 10**12], or ``success_threshold > half_open_calls``.
    """

    failure_threshold: int = 5
    success_threshold: int = 3
    open_ms: int = 30_000
    half_open_calls: int = 3
    trial_timeout_ms: int = 30_000

    def __post_init__(self) -> None:
        for field in self.__struct_fields__:
            value = getattr(self, field)
            if not isinstance(value, int) or not 1 <= value <= MAX_SETTING:
                raise ConfigError(
                    f"breaker {field} must be an integer in [1, {MAX_SETTING}], got {value!r}"
                )
        if self.success_threshold > self.half_open_calls:
            raise ConfigError(
                f"success_threshold {self.success_threshold} cannot exceed "
                f"half_open_calls {self.half_open_calls}: it could never close"
            )


class BreakerRecord(msgspec.Struct, kw_only=True):
    """What Redis stores per breaker (JSON; the Lua scripts read and write these fields)."""

    state: str = "closed"
    gen: int = 0
    failures: int = 0
    successes: int = 0
    trials: int = 0
    trial_ms: int = 0
    opened_ms: int = 0
    half_open_ms: int = 0
    changed_ms: int = 0
    opens: int = 0
    last_error: str = ""
    failure_threshold: int = 5
    success_threshold: int = 3
    open_ms: int = 30_000
    half_open_calls: int = 3
    trial_timeout_ms: int = 30_000

    @property
    def config(self) -> BreakerConfig:
        return BreakerConfig(
            failure_threshold=self.failure_threshold,
            success_threshold=self.success_threshold,
            open_ms=self.open_ms,
            half_open_calls=self.half_open_calls,
            trial_timeout_ms=self.trial_timeout_ms,
        )


_record_decoder = msgspec.json.Decoder(BreakerRecord)
_encoder = msgspec.json.Encoder()


def decode_record(raw: bytes | str) -> BreakerRecord:
    """Decode a stored record. Raises MessageDecodeError."""
    try:
        return _record_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise MessageDecodeError(f"corrupt breaker record: {e}") from e


class BreakerState(msgspec.Struct, frozen=True, kw_only=True):
    """A breaker as an operator sees it.

    Attributes
    ----------
    name:
        The breaker's name.
    state:
        ``closed`` | ``open`` | ``half_open`` as the next call asking permission will find it
        (an open breaker whose ``open_ms`` passed shows ``half_open``).
    stored_state:
        The state written in Redis by the last transition.
    failures:
        Consecutive failures counted while closed.
    successes, trials:
        Trial successes and trial permits in use while half-open.
    opens:
        How often it opened since it was created.
    retry_after_ms:
        While open: ms until it admits trial calls (server clock); else 0.
    changed_ms:
        Server-clock ms of the last transition (0: never).
    last_error:
        Text of the last failure counted (at most 200 bytes).
    config:
        Its stored thresholds.
    """

    name: str
    state: str
    stored_state: str
    failures: int
    successes: int
    trials: int
    opens: int
    retry_after_ms: int
    changed_ms: int
    last_error: str
    config: BreakerConfig


def view(name: str, rec: BreakerRecord, now_ms: int) -> BreakerState:
    """The operator's view of ``rec`` at server time ``now_ms``.

    Mirrors the lazy rules of ``acquire_breaker.lua`` for display only; the scripts decide.
    """
    state, retry, trials, successes = rec.state, 0, rec.trials, rec.successes
    if (
        state == "half_open"
        and rec.trials > rec.successes
        and now_ms >= rec.trial_ms + rec.trial_timeout_ms
    ):
        state, trials, successes = "open", 0, 0
    if state == "open":
        opened = rec.opened_ms if rec.state == "open" else now_ms
        retry = max(0, opened + rec.open_ms - now_ms)
        if retry == 0:
            state, trials, successes = "half_open", 0, 0
    return BreakerState(
        name=name,
        state=state,
        stored_state=rec.state,
        failures=rec.failures,
        successes=successes,
        trials=trials,
        opens=rec.opens,
        retry_after_ms=retry,
        changed_ms=rec.changed_ms,
        last_error=rec.last_error,
        config=rec.config,
    )


class Permit(msgspec.Struct, frozen=True):
    """Permission for one call; report its outcome with :meth:`CircuitBreaker.record`.

    Attributes
    ----------
    name:
        The breaker.
    gen:
        The breaker's generation when the permit was given.
    kind:
        ``closed`` (a normal call) or ``half_open`` (one of the trial calls).
    """

    name: str
    gen: int
    kind: str


class CircuitBreaker:
    """Handle on one shared breaker; cheap, holds no state of its own (Redis does).

    Parameters
    ----------
    registry:
        The registry that made it (its scripts and keys).
    name:
        The breaker's name (an id).
    failure_types:
        Exceptions of these types raised by a protected call count as failures; any other
        (``asyncio.CancelledError``, ``KeyboardInterrupt``...) gives the permit back without
        counting. Default: every ``Exception``.
    """

    def __init__(
        self,
        registry: BreakerRegistry,
        name: str,
        failure_types: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        self.registry = registry
        self.name = check_id(name, "breaker name")
        self.failure_types = failure_types

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r})"

    async def acquire(self) -> Permit:
        """Ask permission for one call.

        Returns
        -------
        Permit
            Report the call's outcome with :meth:`record` (or use :meth:`protect`).

        Raises
        ------
        CircuitOpenError
            Open, or half-open with every trial permit in use.
        NotFound
            The breaker was deleted from Redis (use ``get_or_create``).
        """
        got = await ops.acquire_breaker(self.registry.scripts, self.registry.keys, self.name)
        if not got.allowed:
            raise CircuitOpenError(self.name, got.state, got.retry_after_ms)
        return Permit(self.name, got.gen, got.state)

    async def record(self, permit: Permit, outcome: Outcome, error: str = "") -> str:
        """Report how a permitted call ended; returns the breaker's state afterwards.

        Parameters
        ----------
        permit:
            From :meth:`acquire`; a permit of an earlier state is ignored.
        outcome:
            ``success`` | ``failure`` | ``release`` (cancelled: frees a trial permit).
        error:
            Failure text kept as ``last_error`` (first 200 bytes, whole characters).
        """
        text = error.encode()[:MAX_ERROR_BYTES].decode(errors="ignore")  # whole characters
        recorded = await ops.record_breaker(
            self.registry.scripts, self.registry.keys, self.name, permit.gen, outcome, text
        )
        return recorded.state

    async def success(self, permit: Permit) -> str:
        return await self.record(permit, "success")

    async def failure(self, permit: Permit, error: str = "") -> str:
        return await self.record(permit, "failure", error)

    @contextlib.asynccontextmanager
    async def protect(self) -> AsyncIterator[Permit]:
        """``async with breaker.protect():`` acquire, run the block, record its outcome.

        Raises
        ------
        CircuitOpenError
            Before the block runs, when the breaker refuses the call.
        """
        permit = await self.acquire()
        try:
            yield permit
        except self.failure_types as e:
            await self.record(permit, "failure", f"{type(e).__name__}: {e}")
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                await self.record(permit, "release")
            raise
        await self.record(permit, "success")

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``await breaker.call(fn, *args)``: run ``fn`` under :meth:`protect`."""
        async with self.protect():
            return await fn(*args, **kwargs)

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Decorate a coroutine function so every call runs under :meth:`protect`."""

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            async with self.protect():
                return await fn(*args, **kwargs)

        return wrapper

    async def state(self) -> BreakerState:
        """This breaker's current view. Raises NotFound when it does not exist."""
        found = await self.registry.states([self.name])
        if self.name not in found:
            raise NotFound("NOT_FOUND", f"breaker {self.name}")
        return found[self.name]


class BreakerRegistry:
    """The namespace's breakers: create, look up, reset, list.

    Parameters
    ----------
    scripts:
        Scripts bound to a client.
    keys:
        The namespace.
    defaults:
        Thresholds of breakers created without their own (:class:`BreakerConfig` defaults).
    """

    def __init__(self, scripts: Scripts, keys: Keys, defaults: BreakerConfig | None = None) -> None:
        self.scripts = scripts
        self.keys = keys
        self.client = scripts.client
        self.defaults = defaults or BreakerConfig()
        self.key = keys.breakers

    async def get_or_create(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        failure_types: tuple[type[BaseException], ...] = (Exception,),
    ) -> CircuitBreaker:
        """The breaker ``name``, created closed with ``config`` (else the defaults) if new.

        An existing breaker keeps its stored thresholds. Raises InvalidIdError.
        """
        breaker = CircuitBreaker(self, name, failure_types)
        cfg = config or self.defaults
        rec = BreakerRecord(
            changed_ms=int(time.time() * 1000),
            **{f: getattr(cfg, f) for f in cfg.__struct_fields__},
        )
        data = _encoder.encode(rec)
        await self.scripts.read(lambda: self.client.hsetnx(self.key, breaker.name, data))
        return breaker

    async def get(self, name: str) -> CircuitBreaker | None:
        """The breaker ``name`` if it exists, else None. Raises InvalidIdError."""
        bname = check_id(name, "breaker name")
        exists = await self.scripts.read(lambda: self.client.hexists(self.key, bname))
        return CircuitBreaker(self, bname) if exists else None

    async def reset(self, name: str) -> bool:
        """Force ``name`` closed (counts cleared, in-flight permits stale). False if unknown."""
        return bool(
            await ops.reset_breakers(self.scripts, self.keys, [check_id(name, "breaker name")])
        )

    async def reset_all(self) -> list[str]:
        """Force every breaker closed; returns their names."""
        return sorted(await ops.reset_breakers(self.scripts, self.keys, []))

    async def states(self, names: list[str] | None = None) -> dict[str, BreakerState]:
        """Every breaker's view (or those of ``names`` that exist), by name, on the server clock.

        Raises
        ------
        MessageDecodeError
            A stored record is corrupt.
        """
        if names is None:
            raws = decode(
                await self.scripts.read(lambda: self.client.hgetall(self.key)), dict[str, bytes]
            )
        else:
            wanted = [check_id(n, "breaker name") for n in names]
            values = await self.scripts.read(lambda: self.client.hmget(self.key, wanted))
            found = decode(values, list[bytes | None])
            raws = {n: v for n, v in zip(wanted, found) if v is not None}
        seconds, micros = decode(await self.scripts.read(self.client.time), tuple[int, int])
        now = seconds * 1000 + micros // 1000
        return {n: view(n, decode_record(raws[n]), now) for n in sorted(raws)}
