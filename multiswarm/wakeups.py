"""Wake-ups: the hot path's notifications, published by the task scripts themselves.

``submit_tasks.lua`` and ``finish_tasks.lua`` PUBLISH on the partition's
:attr:`~multiswarm.keys.Keys.wake_leader` when they make work for the leader (tasks ready, slots
freed); ``dispatch_tasks.lua`` PUBLISHes on :meth:`~multiswarm.keys.Keys.wake_swarm` of each
swarm it assigned tasks to. The message is empty: a wake-up only says "look again", and the truth
stays in the durable structures the woken loop reads (decision 50). So no process spends a round
trip or a signature on telling another one, and a forged or lost wake-up costs at most one
look: every woken loop keeps its slow safety-net timer.

:func:`wake_on` subscribes to such channels and sets an :class:`asyncio.Event` per channel. On
every (re)subscription it sets the events too: whatever was published while the subscription was
down is lost on pub/sub, so the loops look once in case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from multiswarm.connection import CONNECTION_ERRORS, Client, cancel_requested
from multiswarm.feed import Feed
from multiswarm.keys import Keys
from multiswarm.ops.script import text

log = logging.getLogger(__name__)

#: Longest pause between two attempts to resubscribe after a lost connection, seconds.
MAX_RETRY_S = 2.0

#: Turns of the event loop given to a woken loop before the next read of the subscription is
#: armed (redis-py's ``get_message``: ~30-40 µs). A woken claim loop sends its claim in the
#: first, the leader's dispatch loop (an ``asyncio.wait`` on two events) in the third. Only
#: when the event was clear: if it was set already, its loop is awake and nobody waits on it.
YIELDS = 3


async def wake_on(client: Client, keys: Keys, events: Mapping[str, asyncio.Event]) -> None:
    """Set ``events[channel]`` at each message on ``channel`` (and at each (re)subscription),
    until cancelled; resubscribes after connection losses with a doubling pause (50 ms to
    :data:`MAX_RETRY_S`). The channels must be wake-up channels of ``keys``
    (:meth:`~multiswarm.keys.Keys.is_classic`)."""
    delay, refresh = 0.05, False
    while True:
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
                    delay, refresh = 0.05, False
                    # let the woken loop reach its script call before the next read is armed
                    for _ in range(YIELDS if woken else 0):
                        await asyncio.sleep(0)
        except CONNECTION_ERRORS as e:
            if cancel_requested():
                raise asyncio.CancelledError() from e
            log.info("wake-up subscription lost (%s); resubscribing in %.2f s", e, delay)
            await asyncio.sleep(delay)
            delay, refresh = min(delay * 2, MAX_RETRY_S), True
        finally:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await feed.aclose()
