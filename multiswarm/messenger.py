"""SwarmMessenger: typed envelopes over the seed's pub/sub channels.

Pub/sub is fire-and-forget, so it only carries notifications (a task was submitted, assigned,
completed; a leader was elected or stepped down). Everything that must not be lost is in the
durable task structures; a missed notification costs at most one poll interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from multiswarm.connection import CONNECTION_ERRORS, Client
from multiswarm.errors import MessageDecodeError
from multiswarm.keys import Keys
from multiswarm.messages import Envelope, decode_envelope, encode_envelope

log = logging.getLogger(__name__)


class SwarmMessenger:
    """Publish and receive :class:`~multiswarm.messages.Envelope` messages.

    Parameters
    ----------
    client:
        redis-py asyncio client.
    keys:
        Names of the namespace (channels ``<ns>:tasks`` etc.).
    sender:
        Id put in the ``sender`` field of every envelope sent.
    """

    def __init__(self, client: Client, keys: Keys, sender: str = "") -> None:
        self.client = client
        self.keys = keys
        self.sender = sender
        self.sent = 0
        self.received = 0
        self.dropped = 0

    async def publish(
        self, channel: str, type: str, payload: dict[str, Any] | None = None, target: str = ""
    ) -> int:
        """Publish one envelope; returns the number of subscribers that got it.

        Connection errors are logged and swallowed: a notification is best effort by design.
        Raises MessageTooLargeError (bytes over the limit) before anything is sent.
        """
        data = encode_envelope(
            Envelope(type=type, sender=self.sender, target=target, payload=payload or {}))
        try:
            n = int(await self.client.publish(channel, data))
        except CONNECTION_ERRORS as e:
            log.debug("publish on %s failed: %s", channel, e)
            return 0
        self.sent += 1
        return n

    async def listen(
        self, channels: Sequence[str], ready: asyncio.Event | None = None
    ) -> AsyncIterator[tuple[str, Envelope]]:
        """Yield ``(channel, envelope)`` forever; resubscribe by itself when Redis restarts.

        Malformed messages are counted in ``dropped`` and skipped. ``ready`` is set once the
        subscription is confirmed (each time, after a reconnect too).
        """
        delay = 0.05
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*channels)
                if ready is not None:
                    ready.set()
                delay = 0.05
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    channel = msg["channel"]
                    channel = channel.decode() if isinstance(channel, bytes) else channel
                    try:
                        env = decode_envelope(msg["data"])
                    except MessageDecodeError:
                        self.dropped += 1
                        continue
                    self.received += 1
                    yield channel, env
            except CONNECTION_ERRORS as e:
                log.info("subscription lost (%s); resubscribing in %.2f s", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                try:
                    await pubsub.aclose()
                except CONNECTION_ERRORS:
                    pass
