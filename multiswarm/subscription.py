"""The receiving side of a messenger: subscribe, replay the gap, de-duplicate, dead-letter.

:meth:`Subscription.listen` resubscribes by itself after a connection loss or a Redis restart and
replays from the channel's history stream the recorded messages it missed; duplicates between the
replay and live delivery are dropped by stream id. Malformed, unknown and (with a secret)
unsigned, forged or replayed messages are counted and dead-lettered with their reason
(``dead_letter_message.lua``); they are never yielded. :class:`~multiswarm.messenger.SwarmMessenger`
owns one :class:`Subscription` and exposes ``listen`` and ``history``. See ``docs/messaging.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import redis.exceptions

from multiswarm.connection import (
    CONNECTION_ERRORS,
    OUTAGE_CAUGHT,
    Client,
    cancel_requested,
    outage,
    server_busy,
    short,
)
from multiswarm.envelopes import (
    Delivered,
    SeenWindow,
    StreamId,
    check_channel,
    decode_message,
    format_stream_id,
    is_task_event,
    parse_stream_id,
)
from multiswarm.errors import MessageRejected, MultiswarmError, RedisUnavailable
from multiswarm.feed import Feed
from multiswarm.keys import Keys
from multiswarm.ops import messages as ops
from multiswarm.ops.messages import DeadLetter
from multiswarm.ops.script import text
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
#: How long a listener's notice that it wants task events lasts, in ms; renewed every third of
#: it, so events stop at most this long after the last listener left (decision 37).
EVENTS_WATCH_MS = 30_000


class _Cursor:
    """Per-channel position of one subscriber: replay after ``cursor``; live frames with a
    stream id at or below ``delivered`` were replayed already."""

    __slots__ = ("cursor", "delivered")

    def __init__(self, cursor: StreamId | None) -> None:
        self.cursor = cursor
        self.delivered: StreamId = (0, 0)


class Subscription:
    """Receives, verifies and de-duplicates the messages of one messenger.

    Parameters are those of :class:`~multiswarm.messenger.SwarmMessenger` of the same names;
    ``key`` is the HMAC key (None: unsigned), ``address`` the messenger's reply address, and
    ``counts``/``reasons`` the messenger's counters, updated in place.
    """

    def __init__(
        self,
        client: Client,
        keys: Keys,
        scripts: Scripts,
        *,
        sender: str,
        address: str,
        agents: set[str],
        key: bytes | None,
        hear_own_broadcasts: bool,
        max_bytes: int,
        replay_window_ms: int,
        max_seen: int,
        dead_letter_len: int,
        counts: dict[str, int],
        reasons: dict[str, int],
    ) -> None:
        self.client = client
        self.keys = keys
        self._scripts = scripts
        self.sender = sender
        self.address = address
        self.agents = agents
        self._key = key
        self.hear_own_broadcasts = hear_own_broadcasts
        self.max_bytes = max_bytes
        self.replay_window_ms = replay_window_ms
        self.max_seen = max_seen
        self.dead_letter_len = dead_letter_len
        self.counts = counts
        self.reasons = reasons

    def _wanted(self, channel: str, env: Delivered) -> bool:
        if channel == self.keys.ch_global:
            return self.hear_own_broadcasts or env.sender not in (self.sender, self.address)
        if channel == self.keys.ch_agents and self.agents:
            return env.target in self.agents
        return True

    async def _reject(
        self, channel: str, raw: bytes | str, err: MessageRejected, dead_letter: bool = True
    ) -> None:
        kind = "rejected" if err.reason in _SECURITY_REASONS else "dropped"
        self.counts[kind] += 1
        self.reasons[err.reason] = self.reasons.get(err.reason, 0) + 1
        log.info("refused message on %s: %s", channel, err)
        if not dead_letter:
            return
        data = raw.encode() if isinstance(raw, str) else raw
        try:
            letter = DeadLetter(
                reason=err.reason,
                detail=err.detail[:500],
                channel=channel,
                receiver=self.address,
                raw=data[:_DLQ_RAW_BYTES],
            )
            await ops.dead_letter_message(
                self._scripts, self.keys, letter, keep=self.dead_letter_len, retry=False
            )
            self.counts["dead_lettered"] += 1
        except (*OUTAGE_CAUGHT, MultiswarmError) as e:  # (best effort: BUSY too)
            log.warning("could not dead-letter a message from %s: %s", channel, e)

    async def _accept(
        self,
        channel: str,
        raw: bytes | str,
        seen: SeenWindow | None,
        pos: _Cursor,
        sid: str = "",
        ref_ms: int | None = None,
    ) -> Delivered | None:
        """Decode, verify and de-duplicate one message; None when refused or not for us."""
        key = self._key
        if key is not None and channel == self.keys.ch_events and is_task_event(raw):
            # task events come from inside Lua scripts, which cannot sign (lib/02_tasks.lua);
            # nothing in multiswarm acts on them, they are for people and dashboards
            key = None
        try:
            env = decode_message(
                channel,
                raw,
                limit=self.max_bytes,
                key=key,
                now_ms=ref_ms,
                window_ms=self.replay_window_ms,
                sid=sid,
            )
        except MessageRejected as e:
            await self._reject(channel, raw, e)
            return None
        at: StreamId | None = None
        if env.sid:
            try:
                at = parse_stream_id(env.sid)
            except ValueError:
                env.sid = ""
            else:
                if at <= pos.delivered:
                    self.counts["duplicates"] += 1
                    return None
        if seen is not None:
            try:
                seen.check(env.id, sent_ms=env.ts_ms)
            except MessageRejected as e:
                # before the cursor moves: a replayed frame's stream id is the replayer's to
                # choose (a signed envelope re-published with a later one), and moved to it the
                # cursor took every message before it for a duplicate (found in review)
                await self._reject(channel, raw, e)
                return None
        if at is not None and at[0] <= time.time() * 1000 + _MAX_SID_SKEW_MS:
            pos.delivered = at
            if pos.cursor is None or at > pos.cursor:
                pos.cursor = at
        if not self._wanted(channel, env):
            return None
        self.counts["received"] += 1
        return env

    async def _entries(
        self, channel: str, lo: str, count: int | None, reverse: bool = False
    ) -> list[tuple[str, bytes | str | None]]:
        """History entries ``(stream id, envelope)`` from ``lo`` (XRANGE syntax)."""
        key = self.keys.history(channel)
        try:
            raw: Any = await (
                self.client.xrevrange(key, "+", lo, count=count)
                if reverse
                else self.client.xrange(key, lo, "+", count=count)
            )
        except redis.exceptions.ResponseError as e:  # e.g. WRONGTYPE: not a history stream
            if server_busy(e):
                raise  # not an answer: the subscription waits it out and reads again
            log.warning("cannot read history %s: %s", key, e)
            return []
        return [(text(i), (f or {}).get(b"m", (f or {}).get("m"))) for i, f in raw or ()]

    async def _tip(self, channel: str) -> StreamId:
        entries = await self._entries(channel, "-", 1, reverse=True)
        return parse_stream_id(entries[0][0]) if entries else (0, 0)

    async def _replay(self, channel: str, pos: _Cursor, seen: SeenWindow | None) -> list[Delivered]:
        out: list[Delivered] = []
        start = pos.cursor or (0, 0)
        while True:
            entries = await self._entries(channel, f"({format_stream_id(start)}", _REPLAY_BATCH)
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
        self,
        channels: Sequence[str],
        ready: asyncio.Event | None = None,
        *,
        since: str | int | None = None,
        give_up_s: float | None = None,
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
        give_up_s:
            Raise :class:`~multiswarm.errors.RedisUnavailable` once Redis has been unreachable
            this long (seconds); default: resubscribe forever (a role outlives outages).

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
        watching = self.keys.ch_events in positions
        renewer = asyncio.create_task(self._renew_watch()) if watching else None
        try:
            async for item in self._listen(chans, positions, seen, ready, give_up_s, watching):
                yield item
        finally:
            if renewer is not None:
                renewer.cancel()

    async def _renew_watch(self) -> None:
        while True:
            await asyncio.sleep(EVENTS_WATCH_MS / 3000)
            await self._watch_events()

    async def _watch_events(self) -> None:
        # every partition's task scripts publish only while their own partition's watch key
        # exists (decision 44): a listener watches all of them
        partitions = Keys.all(self.keys.ns, self.keys.partitions)
        outcomes = await asyncio.gather(
            *(ops.watch_events(self._scripts, k, EVENTS_WATCH_MS) for k in partitions),
            return_exceptions=True,
        )
        for e in outcomes:
            if isinstance(e, MultiswarmError):  # the next renewal, or resubscription, tries again
                log.warning("could not ask for task events: %s", e)
            elif isinstance(e, BaseException):
                raise e

    async def _listen(
        self,
        chans: list[str],
        positions: dict[str, _Cursor],
        seen: SeenWindow | None,
        ready: asyncio.Event | None,
        give_up_s: float | None,
        watching: bool,
    ) -> AsyncGenerator[tuple[str, Delivered], None]:
        delay = 0.05
        down_since: float | None = None
        while True:
            feed = Feed(self.client, self.keys)
            confirmed: set[str] = set()
            try:
                await feed.open(chans, refresh=down_since is not None)
                while True:
                    msg = await feed.get(1.0)
                    if cancel_requested():
                        # redis-py reads through asyncio.wait_for when a socket timeout is set;
                        # on Python 3.11 it can return a reply and drop a cancellation that
                        # arrived meanwhile. The task still counts it: honour it here.
                        raise asyncio.CancelledError()
                    if msg is None:
                        continue
                    kind = text(msg["type"])
                    if kind not in ("message", "subscribe"):
                        continue
                    channel = text(msg["channel"])
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
                        delay, down_since = 0.05, None
                        if watching:  # before ready: what happens from then on is published
                            await self._watch_events()
                        if ready is not None:
                            ready.set()
                    if pos.cursor is None:
                        pos.cursor = await self._tip(channel)
                    else:
                        for env in await self._replay(channel, pos, seen):
                            yield channel, env
            except OUTAGE_CAUGHT as e:
                if not outage(e):
                    raise
                if cancel_requested():  # a cancellation redis-py reported as a lost connection
                    raise asyncio.CancelledError() from e
                if ready is not None:
                    ready.clear()
                down_since = time.monotonic() if down_since is None else down_since
                if give_up_s is not None and time.monotonic() - down_since > give_up_s:
                    raise RedisUnavailable(
                        f"Redis unreachable for {give_up_s:.0f} s: {short(e)}"
                    ) from e
                log.info("subscription lost (%s); resubscribing in %.2f s", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                self.counts["active_subscriptions"] -= len(confirmed)
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await feed.aclose()

    async def history(
        self, channel: str, since: str | int | None = None, count: int | None = None
    ) -> list[Delivered]:
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
                out.append(
                    decode_message(
                        channel,
                        raw,
                        limit=self.max_bytes,
                        key=self._key,
                        now_ms=parse_stream_id(sid)[0],
                        window_ms=self.replay_window_ms,
                        sid=sid,
                    )
                )
            except MessageRejected as e:
                await self._reject(channel, raw, e, dead_letter=False)
        return out
