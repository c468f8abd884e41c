"""SwarmMessenger: typed envelopes over pub/sub channels, with history, replay and requests.

Two ways to publish, chosen per call:

- **recorded** (``send``, ``broadcast``, ``send_to_agent``, ``request``, ``reply``; default
  ``record=True``): one Lua script (``publish_message.lua``) appends the message to the channel's
  history stream (``MAXLEN ~1000``, ``PEXPIRE 1 h``) and publishes it in the same atomic step, with
  the stream id in the frame. Late joiners and reconnecting subscribers replay from that id.
- **notification** (``publish``, default ``record=False``): a plain ``PUBLISH`` of the envelope.
  The coordinator, worker and registry use it for wake-ups (task submitted/assigned/completed,
  leadership changes); the durable task structures are the truth and a lost wake-up costs at most
  one poll interval, so the hot path stays one cheap command with no stream write.

Subscribers (:meth:`SwarmMessenger.listen`, and :meth:`SwarmMessenger.start` for handler
dispatch) resubscribe by themselves after a connection loss or a Redis restart and replay the
recorded messages they missed; duplicates between the replay and live delivery are dropped by
stream id. Malformed, unknown and (with ``MULTISWARM_SECRET``) unsigned, forged or replayed
messages are counted and dead-lettered with their reason; they never reach a handler.
See ``docs/messaging.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Iterable, Sequence
from typing import Any, Protocol

import msgspec
import redis.exceptions

from multiswarm.connection import CONNECTION_ERRORS, Client, cancel_requested
from multiswarm.envelopes import (
    Delivered,
    SeenWindow,
    StreamId,
    check_channel,
    check_type,
    decode_message,
    encode_message,
    format_stream_id,
    parse_stream_id,
    secret_key,
    swarm_channel,
)
from multiswarm.errors import (
    MessageRejected,
    MessageTooLargeError,
    MultiswarmError,
    RedisUnavailable,
    RequestFailed,
    RequestTimeout,
)
from multiswarm.keys import ID_PATTERN, Keys, check_id
from multiswarm.messages import MAX_MESSAGE_BYTES, Envelope
from multiswarm.scripts import Scripts

log = logging.getLogger(__name__)

#: Rejection reasons counted as ``rejected`` (signing); the others count as ``dropped``.
_SECURITY_REASONS = frozenset({"unsigned", "forged", "stale", "replayed"})
#: Bytes of a refused message kept in its dead-letter entry.
_DLQ_RAW_BYTES = 4096
#: History entries read per XRANGE while replaying.
_REPLAY_BATCH = 500
#: A live frame's stream id further than this in the future is not trusted for dedup.
_MAX_SID_SKEW_MS = 60_000

STAT_NAMES = (
    "sent", "received", "broadcasts", "targeted", "dropped", "rejected", "handler_errors",
    "active_subscriptions", "replayed", "duplicates", "requests", "responses", "timeouts",
    "too_large", "dead_lettered",
)


class MessageHandler(Protocol):
    """``handler(envelope)``; may be ``async``. What it returns is ignored."""

    def __call__(self, env: Delivered, /) -> Awaitable[None] | None: ...


class RequestHandler(Protocol):
    """``handler(request) -> response payload`` (a dict; None means ``{}``); may be async."""

    def __call__(
        self, env: Delivered, /
    ) -> Awaitable[dict[str, Any] | None] | dict[str, Any] | None: ...


class Sent(msgspec.Struct, frozen=True):
    """What a send returned.

    Attributes
    ----------
    id:
        Envelope id (requests: the correlation id of the response).
    channel:
        Channel it was published on.
    stream_id:
        History entry id (``"<ms>-<seq>"``) of a recorded message, ``""`` otherwise.
    receivers:
        Subscribers that got it (0 when a best-effort publish failed).
    """

    id: str
    channel: str
    stream_id: str
    receivers: int


class _Cursor:
    """Per-channel position of one subscriber: replay after ``cursor``; live frames with a
    stream id at or below ``delivered`` were replayed already."""

    __slots__ = ("cursor", "delivered")

    def __init__(self, cursor: StreamId | None) -> None:
        self.cursor = cursor
        self.delivered: StreamId = (0, 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SwarmMessenger:
    """Publish and receive :class:`~multiswarm.messages.Envelope` messages of one sender.

    Parameters
    ----------
    client:
        redis-py asyncio client.
    keys:
        Names of the namespace (channels ``<ns>:global`` etc., history keys).
    sender:
        Id put in the ``sender`` field of every envelope (a swarm id for swarms). Requests need
        a valid id; without one an ``anon-<hex>`` address is used for replies.

    Other Parameters
    ----------------
    agents:
        Agent ids hosted here: ``agents``-channel messages addressed to others are skipped, and
        :meth:`start` subscribes to the agents channel when there are any.
    secret:
        HMAC-SHA256 secret. None (default) reads ``MULTISWARM_SECRET``; ``""`` turns signing off.
        With a secret every envelope sent is signed and unsigned, forged or replayed ones are
        refused.
    hear_own_broadcasts:
        Deliver this sender's own messages on the global channel (default False).
    history_len:
        Messages kept per channel history (approximate, ``XADD MAXLEN ~``), 1000.
    history_ttl_ms:
        History expiry after its last message, ms (1 h).
    max_bytes:
        Largest encoded message, bytes (1 MiB), signature included.
    replay_window_ms:
        Signed messages older (or newer) than this are refused as stale, ms (5 min).
    max_seen:
        Signed-message ids remembered per subscriber for replay detection (100 000).
    request_timeout_s:
        Default timeout of :meth:`request`, seconds (30).
    reconnect_timeout_s:
        How long a (non best-effort) send retries connection errors before RedisUnavailable.
    dead_letter_len:
        Entries kept in the message dead-letter stream (approximate), 1000.
    max_concurrent_requests:
        Request handlers running at once; further requests wait (64).
    """

    def __init__(
        self, client: Client, keys: Keys, sender: str = "", *, agents: Iterable[str] = (),
        secret: str | bytes | None = None, hear_own_broadcasts: bool = False,
        history_len: int = 1000, history_ttl_ms: int = 3_600_000,
        max_bytes: int = MAX_MESSAGE_BYTES, replay_window_ms: int = 300_000,
        max_seen: int = 100_000, request_timeout_s: float = 30.0,
        reconnect_timeout_s: float = 10.0, dead_letter_len: int = 1000,
        max_concurrent_requests: int = 64,
    ) -> None:
        self.client = client
        self.keys = keys
        self.sender = sender
        self.address = (sender if ID_PATTERN.fullmatch(sender)
                        else f"anon-{uuid.uuid4().hex[:12]}")
        self.agents = {check_id(a, "agent id") for a in agents}
        self._key = secret_key(os.environ.get("MULTISWARM_SECRET") if secret is None else secret)
        self.hear_own_broadcasts = hear_own_broadcasts
        self.history_len = history_len
        self.history_ttl_ms = history_ttl_ms
        self.max_bytes = max_bytes
        self.replay_window_ms = replay_window_ms
        self.max_seen = max_seen
        self.request_timeout_s = request_timeout_s
        self.reconnect_timeout_s = reconnect_timeout_s
        self.dead_letter_len = dead_letter_len
        self.counts: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        self.reasons: dict[str, int] = {}
        self._scripts = Scripts(client, reconnect_timeout_s)
        self._handlers: dict[str, list[MessageHandler]] = {}
        self._request_handler: RequestHandler | None = None
        self._request_slots = asyncio.Semaphore(max_concurrent_requests)
        self._pending: dict[str, asyncio.Future[Delivered]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._loop_channels: list[str] = []
        self._loop_ready = asyncio.Event()
        self._reply_task: asyncio.Task[None] | None = None
        self._reply_ready = asyncio.Event()
        self._reply_lock = asyncio.Lock()
        self._jobs: set[asyncio.Task[None]] = set()

    # -- compatibility counters ------------------------------------------------------------------
    @property
    def sent(self) -> int:
        return self.counts["sent"]

    @property
    def received(self) -> int:
        return self.counts["received"]

    @property
    def dropped(self) -> int:
        return self.counts["dropped"]

    @property
    def signing(self) -> bool:
        """True when envelopes are signed and signatures required."""
        return self._key is not None

    @property
    def reply_channel(self) -> str:
        return self.keys.ch_reply(self.address)

    def stats(self) -> dict[str, Any]:
        """Counters of this messenger: sent, received, broadcasts, targeted, dropped, rejected,
        handler_errors, active_subscriptions, replayed, duplicates, requests, responses,
        timeouts, too_large, dead_lettered, and ``reasons`` (refusals per reason)."""
        return {**self.counts, "pending_requests": len(self._pending),
                "reasons": dict(self.reasons)}

    # -- sending ---------------------------------------------------------------------------------
    def _envelope(self, type: str, payload: dict[str, Any] | None, target: str, agent: str,
                  correlation_id: str = "", sender: str | None = None) -> Envelope:
        if agent:
            check_id(agent, "agent id")
        return Envelope(type=check_type(type), sender=self.sender if sender is None else sender,
                        sender_agent=agent, target=target, payload=payload or {},
                        correlation_id=correlation_id)

    async def _send(self, channel: str, env: Envelope, record: bool, strict: bool) -> Sent:
        try:
            data = encode_message(env, channel, self._key, self.max_bytes)
        except MessageTooLargeError:
            self.counts["too_large"] += 1
            raise
        sid = ""
        try:
            if record:
                reply = await self._scripts.call(
                    "publish_message", [self.keys.history(channel)],
                    [channel, data, self.history_len, self.history_ttl_ms, self.max_bytes],
                    retry=strict)
                receivers, sid = int(reply[0]), _text(reply[1])
            else:
                receivers = int(await self.client.publish(channel, data))
        except (*CONNECTION_ERRORS, RedisUnavailable) as e:
            if strict:
                if isinstance(e, RedisUnavailable):
                    raise
                raise RedisUnavailable(f"publish on {channel} failed: {e}") from e
            log.debug("publish on %s failed: %s", channel, e)
            return Sent(env.id, channel, "", 0)
        self.counts["sent"] += 1
        if channel == self.keys.ch_global:
            self.counts["broadcasts"] += 1
        elif env.target:
            self.counts["targeted"] += 1
        return Sent(env.id, channel, sid, receivers)

    async def publish(
        self, channel: str, type: str, payload: dict[str, Any] | None = None, target: str = "",
        *, record: bool = False,
    ) -> int:
        """Publish one notification; returns the number of subscribers that got it.

        Best effort: connection errors are logged and swallowed (0 is returned).

        Parameters
        ----------
        channel:
            One of the namespace's channels (:func:`~multiswarm.envelopes.check_channel`).
        type, payload, target:
            Envelope fields.
        record:
            Also append to the channel history (one Lua script). Off by default: notifications
            are wake-ups whose truth is in durable structures.

        Raises
        ------
        MessageTooLargeError
            Encoded envelope over ``max_bytes`` bytes; nothing was sent.
        InvalidIdError
            Malformed channel or type.
        """
        env = self._envelope(type, payload, target, "")
        sent = await self._send(check_channel(self.keys, channel), env, record, strict=False)
        return sent.receivers

    async def send(self, to: str, type: str, payload: dict[str, Any] | None = None, *,
                   agent: str = "", correlation_id: str = "", record: bool = True) -> Sent:
        """Send a message to swarm ``to`` (its channel ``<ns>:<to>``), recorded in history.

        Raises
        ------
        InvalidIdError
            Malformed or reserved swarm id, malformed type or agent id.
        MessageTooLargeError
            Over ``max_bytes`` encoded bytes; nothing was sent.
        RedisUnavailable
            Redis unreachable for ``reconnect_timeout_s``.
        """
        env = self._envelope(type, payload, check_id(to, "swarm id"), agent, correlation_id)
        return await self._send(swarm_channel(self.keys, to), env, record, strict=True)

    async def broadcast(self, type: str, payload: dict[str, Any] | None = None, *,
                        agent: str = "", record: bool = True) -> Sent:
        """Send a message to every swarm (``<ns>:global``). Errors as :meth:`send`."""
        env = self._envelope(type, payload, "", agent)
        return await self._send(self.keys.ch_global, env, record, strict=True)

    async def send_to_agent(self, agent_id: str, type: str, payload: dict[str, Any] | None = None,
                            *, from_agent: str = "", record: bool = True) -> Sent:
        """Agent-to-agent: a message on ``<ns>:agents`` addressed to ``agent_id``.

        Messengers hosting that agent (``agents=``) deliver it; others skip it.
        Errors as :meth:`send`.
        """
        env = self._envelope(type, payload, check_id(agent_id, "agent id"), from_agent)
        return await self._send(self.keys.ch_agents, env, record, strict=True)

    # -- receiving -------------------------------------------------------------------------------
    def on_message(self, type: str, handler: MessageHandler) -> None:
        """Call ``handler(envelope)`` for each delivered message of ``type`` (``"*"``: all).

        Async handlers are awaited in arrival order. An exception in a handler is logged and
        counted in ``handler_errors``; delivery goes on.
        """
        if type != "*":
            check_type(type)
        self._handlers.setdefault(type, []).append(handler)

    def on_request(self, handler: RequestHandler) -> None:
        """Answer ``request`` messages with ``handler(request)``'s return value.

        Handlers run concurrently (``max_concurrent_requests``); an exception is sent back as a
        ``response_error`` (the requester raises :class:`~multiswarm.errors.RequestFailed`).
        """
        self._request_handler = handler

    def default_channels(self) -> list[str]:
        """What :meth:`start` subscribes to: the own swarm channel (when ``sender`` is a valid,
        unreserved swarm id), the global channel, the reply channel, and the agents channel when
        agents are hosted here."""
        channels = []
        with contextlib.suppress(MultiswarmError):
            channels.append(swarm_channel(self.keys, self.sender))
        channels += [self.keys.ch_global, self.reply_channel]
        if self.agents:
            channels.append(self.keys.ch_agents)
        return channels

    def _wanted(self, channel: str, env: Delivered) -> bool:
        if channel == self.keys.ch_global:
            return self.hear_own_broadcasts or env.sender not in (self.sender, self.address)
        if channel == self.keys.ch_agents and self.agents:
            return env.target in self.agents
        return True

    async def _reject(self, channel: str, raw: bytes | str, err: MessageRejected,
                      dead_letter: bool = True) -> None:
        kind = "rejected" if err.reason in _SECURITY_REASONS else "dropped"
        self.counts[kind] += 1
        self.reasons[err.reason] = self.reasons.get(err.reason, 0) + 1
        log.info("refused message on %s: %s", channel, err)
        if not dead_letter:
            return
        data = raw.encode() if isinstance(raw, str) else raw
        try:
            await self._scripts.call(
                "dead_letter_message", [self.keys.message_dlq, self.keys.message_stats],
                [err.reason, err.detail[:500], channel, self.address, data[:_DLQ_RAW_BYTES],
                 self.dead_letter_len], retry=False)
            self.counts["dead_lettered"] += 1
        except (*CONNECTION_ERRORS, MultiswarmError) as e:
            log.warning("could not dead-letter a message from %s: %s", channel, e)

    async def _accept(self, channel: str, raw: bytes | str, seen: SeenWindow | None,
                      pos: _Cursor, sid: str = "", ref_ms: int | None = None) -> Delivered | None:
        """Decode, verify and de-duplicate one message; None when refused or not for us."""
        try:
            env = decode_message(channel, raw, limit=self.max_bytes, key=self._key,
                                 now_ms=ref_ms, window_ms=self.replay_window_ms, sid=sid)
        except MessageRejected as e:
            await self._reject(channel, raw, e)
            return None
        if env.sid:
            try:
                at = parse_stream_id(env.sid)
            except ValueError:
                env.sid = ""
            else:
                if at <= pos.delivered:
                    self.counts["duplicates"] += 1
                    return None
                if at[0] <= time.time() * 1000 + _MAX_SID_SKEW_MS:
                    pos.delivered = at
                    if pos.cursor is None or at > pos.cursor:
                        pos.cursor = at
        if seen is not None:
            try:
                seen.check(env.id)
            except MessageRejected as e:
                await self._reject(channel, raw, e)
                return None
        if not self._wanted(channel, env):
            return None
        self.counts["received"] += 1
        return env

    async def _entries(self, channel: str, lo: str, count: int | None,
                       reverse: bool = False) -> list[tuple[str, bytes | str | None]]:
        """History entries ``(stream id, envelope)`` from ``lo`` (XRANGE syntax)."""
        key = self.keys.history(channel)
        try:
            raw: Any = await (self.client.xrevrange(key, "+", lo, count=count) if reverse
                              else self.client.xrange(key, lo, "+", count=count))
        except redis.exceptions.ResponseError as e:  # e.g. WRONGTYPE: not a history stream
            log.warning("cannot read history %s: %s", key, e)
            return []
        return [(_text(i), (f or {}).get(b"m", (f or {}).get("m"))) for i, f in raw or ()]

    async def _tip(self, channel: str) -> StreamId:
        entries = await self._entries(channel, "-", 1, reverse=True)
        return parse_stream_id(entries[0][0]) if entries else (0, 0)

    async def _replay(self, channel: str, pos: _Cursor,
                      seen: SeenWindow | None) -> list[Delivered]:
        out: list[Delivered] = []
        start = pos.cursor or (0, 0)
        while True:
            entries = await self._entries(channel, f"({format_stream_id(start)}",
                                          _REPLAY_BATCH)
            for sid, raw in entries:
                start = parse_stream_id(sid)
                if raw is None:
                    continue
                env = await self._accept(channel, raw, seen, pos, sid=sid, ref_ms=start[0])
                if env is not None:
                    self.counts["replayed"] += 1
                    out.append(env)
            if len(entries) < _REPLAY_BATCH:
                break
        if pos.cursor is None or start > pos.cursor:
            pos.cursor = start
        return out

    async def listen(
        self, channels: Sequence[str], ready: asyncio.Event | None = None, *,
        since: str | int | None = None,
    ) -> AsyncGenerator[tuple[str, Delivered], None]:
        """Yield ``(channel, envelope)`` forever; resubscribe by itself when Redis restarts.

        After each (re)subscription the recorded messages published while this subscriber was
        away are replayed from history before live ones; a message is yielded once.
        Malformed, unknown or (with signing) unsigned/forged/stale/replayed messages are counted,
        dead-lettered and skipped. Own broadcasts are skipped unless ``hear_own_broadcasts``;
        on the agents channel, with ``agents`` set, messages addressed to others are skipped.

        Parameters
        ----------
        channels:
            Channels to subscribe to (validated).
        ready:
            Set once every channel is subscribed (and set again after each reconnect; cleared
            while disconnected).
        since:
            Replay history after this stream id (exclusive; ``"0"`` for everything kept) or
            from this time in ms (inclusive) before the live messages. Default: live only.

        Use it with :func:`contextlib.aclosing` when leaving the loop early.
        """
        chans = list(dict.fromkeys(check_channel(self.keys, c) for c in channels))
        start: StreamId | None = None
        if isinstance(since, int):  # inclusive of ``since`` ms: start after the ms before
            start = (since - 1, 2**64 - 1) if since > 0 else (0, 0)
        elif since is not None:
            start = parse_stream_id(since)
        positions = {c: _Cursor(start) for c in chans}
        seen = SeenWindow(self.replay_window_ms, self.max_seen) if self._key else None
        delay = 0.05
        while True:
            pubsub: Any = self.client.pubsub()
            confirmed: set[str] = set()
            try:
                await pubsub.subscribe(*chans)
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    kind = _text(msg["type"])
                    if kind not in ("message", "subscribe"):
                        continue
                    channel = _text(msg["channel"])
                    pos = positions.get(channel)
                    if pos is None:
                        continue
                    if kind == "message":
                        env = await self._accept(channel, msg["data"], seen, pos)
                        if env is not None:
                            yield channel, env
                        continue
                    # A subscription (first, or redone after a reconnect): replay the gap.
                    if channel not in confirmed:
                        confirmed.add(channel)
                        self.counts["active_subscriptions"] += 1
                    if len(confirmed) == len(chans):
                        delay = 0.05
                        if ready is not None:
                            ready.set()
                    if pos.cursor is None:
                        pos.cursor = await self._tip(channel)
                    else:
                        for env in await self._replay(channel, pos, seen):
                            yield channel, env
            except CONNECTION_ERRORS as e:
                if cancel_requested():  # a cancellation redis-py reported as a lost connection
                    raise asyncio.CancelledError() from e
                if ready is not None:
                    ready.clear()
                log.info("subscription lost (%s); resubscribing in %.2f s", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                self.counts["active_subscriptions"] -= len(confirmed)
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await pubsub.aclose()

    async def history(self, channel: str, since: str | int | None = None,
                      count: int | None = None) -> list[Delivered]:
        """Recorded messages of ``channel``, oldest first (at most ``history_len``, 1 h).

        Parameters
        ----------
        channel:
            Channel name (validated).
        since:
            Stream id (exclusive, e.g. the ``sid`` of the last message seen) or a time in ms
            (inclusive). Default: everything kept.
        count:
            Most messages returned (the oldest after ``since``).

        Entries that fail decoding or verification are counted and skipped.
        """
        channel = check_channel(self.keys, channel)
        if since is None:
            lo = "-"
        elif isinstance(since, int):
            lo = f"{since}-0"
        else:
            lo = f"({format_stream_id(parse_stream_id(since))}"
        out: list[Delivered] = []
        for sid, raw in await self._entries(channel, lo, count or None):
            if raw is None:
                continue
            try:
                out.append(decode_message(
                    channel, raw, limit=self.max_bytes, key=self._key,
                    now_ms=parse_stream_id(sid)[0], window_ms=self.replay_window_ms, sid=sid))
            except MessageRejected as e:
                await self._reject(channel, raw, e, dead_letter=False)
        return out

    # -- handler dispatch ------------------------------------------------------------------------
    async def _dispatch(self, channel: str, env: Delivered) -> None:
        if env.type in ("response", "response_error") and channel == self.reply_channel:
            fut = self._pending.get(env.correlation_id)
            if fut is not None and not fut.done():
                self.counts["responses"] += 1
                fut.set_result(env)
            return
        if env.type == "request" and self._request_handler is not None:
            job = asyncio.create_task(self._answer(self._request_handler, env))
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)
        for handler in (*self._handlers.get(env.type, ()), *self._handlers.get("*", ())):
            try:
                result = handler(env)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.counts["handler_errors"] += 1
                log.exception("handler for %r failed on message %s", env.type, env.id)

    async def _answer(self, handler: RequestHandler, request: Delivered) -> None:
        async with self._request_slots:
            try:
                result = handler(request)
                if inspect.isawaitable(result):
                    result = await result
                await self.reply(request, result)
            except Exception as e:
                self.counts["handler_errors"] += 1
                log.exception("request handler failed on %s", request.id)
                with contextlib.suppress(MultiswarmError):
                    await self.reply(request, error=f"{type(e).__name__}: {e}")

    async def reply(self, request: Envelope, payload: dict[str, Any] | None = None, *,
                    error: str | None = None) -> Sent:
        """Answer ``request`` on its sender's reply channel (``response`` or, with ``error``,
        ``response_error``). Raises InvalidIdError when the request has no valid sender."""
        requester = check_id(request.sender, "requester id")
        if error is not None:
            env = self._envelope("response_error", {"error": error}, requester, "", request.id)
        else:
            env = self._envelope("response", payload, requester, "", request.id)
        return await self._send(self.keys.ch_reply(requester), env, True, strict=True)

    async def _run(self, channels: list[str], ready: asyncio.Event,
                   since: str | int | None) -> None:
        async with contextlib.aclosing(self.listen(channels, ready, since=since)) as stream:
            async for channel, env in stream:
                await self._dispatch(channel, env)

    async def _wait_ready(self, task: asyncio.Task[None], ready: asyncio.Event) -> None:
        waiter = asyncio.ensure_future(ready.wait())
        try:
            done, _ = await asyncio.wait({waiter, task}, timeout=self.reconnect_timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if task in done:
            task.result()
        if not ready.is_set():
            raise RedisUnavailable(f"could not subscribe within {self.reconnect_timeout_s} s")

    async def start(self, channels: Sequence[str] = (), *,
                    since: str | int | None = None) -> SwarmMessenger:
        """Subscribe to :meth:`default_channels` plus ``channels`` and dispatch to the handlers
        in a background task; returns once subscribed.

        Raises
        ------
        RedisUnavailable
            Not subscribed within ``reconnect_timeout_s`` (the loop is stopped).
        """
        if self._loop_task is not None and not self._loop_task.done():
            return self
        self._loop_channels = list(dict.fromkeys(
            [*self.default_channels(), *(check_channel(self.keys, c) for c in channels)]))
        self._loop_ready = asyncio.Event()
        self._loop_task = asyncio.create_task(
            self._run(self._loop_channels, self._loop_ready, since))
        try:
            await self._wait_ready(self._loop_task, self._loop_ready)
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """Stop the dispatch loop, the reply listener and running request handlers."""
        tasks = [t for t in (self._loop_task, self._reply_task, *self._jobs) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = self._reply_task = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(MultiswarmError("messenger stopped"))

    async def __aenter__(self) -> SwarmMessenger:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- request/response ------------------------------------------------------------------------
    async def _ensure_replies(self) -> None:
        loop_task = self._loop_task
        if loop_task is not None and not loop_task.done() \
                and self.reply_channel in self._loop_channels:
            await self._wait_ready(loop_task, self._loop_ready)
            return
        async with self._reply_lock:
            if self._reply_task is None or self._reply_task.done():
                self._reply_ready = asyncio.Event()
                self._reply_task = asyncio.create_task(
                    self._run([self.reply_channel], self._reply_ready, None))
            await self._wait_ready(self._reply_task, self._reply_ready)

    async def request(self, target: str, payload: dict[str, Any] | None = None,
                      timeout_s: float | None = None, *, agent: str = "") -> Delivered:
        """Send a request to swarm ``target`` and wait for its response.

        The responder (any process whose messenger for ``target`` was started with an
        :meth:`on_request` handler) answers on this messenger's reply channel, matched by
        correlation id. The reply listener starts by itself on first use.

        Parameters
        ----------
        target:
            Swarm id.
        payload:
            Request payload.
        timeout_s:
            Seconds to wait for the response (default ``request_timeout_s``, 30).

        Returns
        -------
        Delivered
            The response envelope; its ``payload`` is what the handler returned.

        Raises
        ------
        RequestTimeout
            No response within ``timeout_s`` (also a ``TimeoutError``).
        RequestFailed
            The responder's handler raised.
        InvalidIdError, MessageTooLargeError, RedisUnavailable
            As :meth:`send`.
        """
        timeout = self.request_timeout_s if timeout_s is None else timeout_s
        channel = swarm_channel(self.keys, target)
        await self._ensure_replies()
        env = self._envelope("request", payload, target, agent, sender=self.address)
        fut: asyncio.Future[Delivered] = asyncio.get_running_loop().create_future()
        self._pending[env.id] = fut
        try:
            await self._send(channel, env, True, strict=True)
            self.counts["requests"] += 1
            try:
                response = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                self.counts["timeouts"] += 1
                raise RequestTimeout(
                    f"no response from {target} to request {env.id} within {timeout} s"
                ) from None
        finally:
            self._pending.pop(env.id, None)
        if response.type == "response_error":
            raise RequestFailed(str(response.payload.get("error", "")), response.sender)
        return response
