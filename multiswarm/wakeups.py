"""Wake-ups: the hot path's notifications, published by the task scripts themselves.

``submit_tasks.lua`` and ``finish_tasks.lua`` PUBLISH on the partition's
:attr:`~multiswarm.keys.Keys.wake_leader` when they make work for the leader (tasks ready, slots
freed); ``dispatch_tasks.lua`` PUBLISHes on :meth:`~multiswarm.keys.Keys.wake_swarm` of each
swarm it assigned tasks to. The message is empty: a wake-up only says "look again", and the truth
stays in the durable structures the woken loop reads (decision 50). So no process spends a round
trip or a signature on telling another one, and a forged or lost wake-up costs at most one
look: every woken loop keeps its slow safety-net timer.

Each wake-up also adds an entry to the stream of the same name (it keeps only the last). On a
plain or Sentinel client an idle leader and a worker whose queue ran dry do not subscribe: their
next dispatch or claim call waits behind an ``XREAD BLOCK`` on that stream
(:meth:`multiswarm.scripts.Scripts.call_when_woken`), so Redis runs it as the wake-up arrives,
with no round trip to the process in between (decision 94). This module serves the others: a
cluster client, or a server that refuses ``XREAD``.

:func:`wake_on` subscribes to such channels and sets an :class:`asyncio.Event` per channel. On
every (re)subscription it sets the events too: whatever was published while the subscription was
down is lost on pub/sub, so the loops look once in case.

On a plain or Sentinel client the subscription's connection is read by :class:`_Listener`, an
asyncio protocol that parses the pushes as they arrive and sets the events in the same callback
(decision 62): redis-py's ``get_message`` took ~55 µs from the bytes' arrival to the frame, on
the hot path of the leader and of every worker. A cluster client keeps :class:`Feed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import redis.exceptions
from redis.asyncio.connection import AbstractConnection

from multiswarm.connection import (
    CONNECTION_ERRORS,
    OUTAGE_CAUGHT,
    Client,
    cancel_requested,
    is_cluster,
    outage,
)
from multiswarm.feed import Feed
from multiswarm.keys import Keys
from multiswarm.ops.script import text

_hiredis: Any
try:
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - redis[hiredis] is a dependency
    _hiredis = None

log = logging.getLogger(__name__)

#: Longest pause between two attempts to resubscribe after a lost connection, seconds.
MAX_RETRY_S = 2.0

#: Turns of the event loop given to a woken loop before :class:`Feed`'s next read is armed
#: (redis-py's ``get_message``: ~30-40 µs). A woken claim loop sends its claim in the first,
#: the leader's dispatch loop (an ``asyncio.wait`` on two events) in the third. Only when the
#: event was clear: if it was set already, its loop is awake and nobody waits on it.
YIELDS = 3

#: Seconds of silence on a directly read subscription after which it is pinged; as long again
#: without a byte (not even the pong) and it is taken for lost and subscribed again.
PING_S = 15.0


async def wake_on(client: Client, keys: Keys, events: Mapping[str, asyncio.Event]) -> None:
    """Set ``events[channel]`` at each message on ``channel`` (and at each (re)subscription),
    until cancelled; resubscribes after connection losses with a doubling pause (50 ms to
    :data:`MAX_RETRY_S`). The channels must be wake-up channels of ``keys``
    (:meth:`~multiswarm.keys.Keys.is_classic`)."""
    delay, refresh = 0.05, False

    def subscribed() -> None:  # it works again: the next outage is retried soon
        nonlocal delay, refresh
        delay, refresh = 0.05, False

    direct = _direct(client)
    while True:
        try:
            if direct:
                await _listen(client, events, subscribed)
            else:
                await _listen_feed(client, keys, events, refresh, subscribed)
        except OUTAGE_CAUGHT as e:
            if not outage(e):
                raise
            if cancel_requested():
                raise asyncio.CancelledError() from e
            log.info("wake-up subscription lost (%s); resubscribing in %.2f s", e, delay)
            await asyncio.sleep(delay)
            delay, refresh = min(delay * 2, MAX_RETRY_S), True


async def _listen_feed(
    client: Client,
    keys: Keys,
    events: Mapping[str, asyncio.Event],
    refresh: bool,
    subscribed: Callable[[], None],
) -> None:
    """Through :class:`Feed` (cluster clients, or without hiredis), until the connection fails."""
    feed = Feed(client, keys)
    try:
        await feed.open(list(events), refresh=refresh)
        while True:
            frame = await feed.get(1.0)
            if cancel_requested():  # redis-py can swallow a cancellation (subscription.py)
                raise asyncio.CancelledError()
            if frame is None:
                continue
            event = events.get(text(frame["channel"]))
            if event is not None and text(frame["type"]) in ("message", "subscribe"):
                woken = not event.is_set()
                event.set()
                subscribed()
                # let the woken loop reach its script call before the next read is armed
                for _ in range(YIELDS if woken else 0):
                    await asyncio.sleep(0)
    finally:
        with contextlib.suppress(*CONNECTION_ERRORS):
            await feed.aclose()


def _direct(client: Client) -> bool:
    """True when the subscription can be read by :class:`_Listener`: a plain or Sentinel
    client of redis-py's own connections, speaking RESP2, with hiredis installed."""
    pool = getattr(client, "connection_pool", None)
    kind = getattr(pool, "connection_class", None)
    kwargs = getattr(pool, "connection_kwargs", {})
    return (
        _hiredis is not None
        and not is_cluster(client)
        and hasattr(pool, "make_connection")
        and isinstance(kind, type)
        and issubclass(kind, AbstractConnection)
        and kind.__module__.startswith("redis.")
        and str(kwargs.get("protocol") or 2) == "2"
    )


class _Listener(asyncio.Protocol):
    """Reads a subscribed connection: each push sets its channel's event as it arrives."""

    def __init__(self, events: Mapping[str, asyncio.Event]) -> None:
        self.events = {c.encode(): e for c, e in events.items()}
        self.reader: Any = _hiredis.Reader()
        self.loop = asyncio.get_running_loop()
        #: why the connection ended, once it did
        self.ended: asyncio.Future[str] = self.loop.create_future()
        #: loop time of the last bytes received
        self.heard_at = self.loop.time()
        #: channels whose subscription the server confirmed; ``ready`` once all are
        self.confirmed = 0
        self.ready: asyncio.Future[str] = self.loop.create_future()

    def data_received(self, data: bytes) -> None:
        self.heard_at = self.loop.time()
        try:
            self.reader.feed(data)
            while (reply := self.reader.gets()) is not False:
                if isinstance(reply, list) and len(reply) >= 2 and reply[0] == b"message":
                    event = self.events.get(reply[1])
                    if event is not None:
                        event.set()
                elif isinstance(reply, list) and len(reply) >= 2 and reply[0] == b"subscribe":
                    # from here on nothing published is missed: look once in case
                    event = self.events.get(reply[1])
                    if event is not None:
                        self.confirmed += 1
                        event.set()
                    if self.confirmed == len(self.events) and not self.ready.done():
                        self.ready.set_result("")
                elif isinstance(reply, Exception):
                    self._end(f"the server replied {reply}")
        except Exception as e:  # garbled stream (hiredis.ProtocolError): subscribe again
            self._end(f"unreadable reply: {e!r}")

    def eof_received(self) -> bool:
        self._end("the server closed the connection")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(f"connection lost: {exc!r}" if exc else "connection closed")

    def _end(self, why: str) -> None:
        if not self.ended.done():
            self.ended.set_result(why)


async def _listen(
    client: Client, events: Mapping[str, asyncio.Event], subscribed: Callable[[], None]
) -> None:
    """SUBSCRIBE on a connection of its own (redis-py's handshake: AUTH, SELECT, TLS, Sentinel's
    master lookup), then hand its transport to a :class:`_Listener`; returns never, raises
    ``redis.exceptions.ConnectionError`` when the connection ends or stays silent."""
    pool: Any = client.connection_pool
    conn: Any = pool.make_connection()
    try:
        await conn.connect()
        if cancel_requested():  # redis-py can swallow a cancellation
            raise asyncio.CancelledError()
        # from the handshake on, the connection is read here only (redis-py's reader would
        # take the confirmations and messages for push notifications of its own)
        transport = conn._writer.transport
        listener = _Listener(events)
        transport.set_protocol(listener)
        transport.write(_hiredis.pack_command(("SUBSCRIBE", *events)))
        await asyncio.wait(
            [listener.ended, listener.ready],
            timeout=conn.socket_timeout or PING_S,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if listener.ended.done():
            raise redis.exceptions.ConnectionError(listener.ended.result())
        if not listener.ready.done():
            raise redis.exceptions.TimeoutError("SUBSCRIBE was not confirmed")
        subscribed()
        while True:
            done, _ = await asyncio.wait([listener.ended], timeout=PING_S)
            if done:
                raise redis.exceptions.ConnectionError(listener.ended.result())
            silent = listener.loop.time() - listener.heard_at
            if silent > 2 * PING_S:
                raise redis.exceptions.ConnectionError(f"no reply to a ping in {PING_S:.0f} s")
            if silent >= PING_S:
                transport.write(b"*1\r\n$4\r\nPING\r\n")
    finally:
        # without waiting for the close: redis-py's protocol, which would say so, is not there
        with contextlib.suppress(*CONNECTION_ERRORS):
            await conn.disconnect(nowait=True)
