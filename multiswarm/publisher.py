"""The sending side of a :class:`~multiswarm.messenger.SwarmMessenger`: envelopes, signing, and
the two ways to publish (recorded through ``publish_message.lua``, or a plain ``PUBLISH``;
``SPUBLISH`` for a sharded channel of a Redis Cluster, :mod:`multiswarm.feed`)."""

from __future__ import annotations

import logging
from typing import Any

from multiswarm.connection import OUTAGE_CAUGHT, outage
from multiswarm.envelopes import Sent, check_type, encode_message
from multiswarm.errors import MessageTooLargeError, RedisUnavailable
from multiswarm.feed import sharded
from multiswarm.keys import Keys, check_id
from multiswarm.messages import Envelope
from multiswarm.ops import messages as ops
from multiswarm.scripts import Scripts

log = logging.getLogger(__name__)


class Publisher:
    """Builds, signs and publishes the envelopes of one sender, counting in ``counts``.

    Parameters are the messenger's (:class:`~multiswarm.messenger.SwarmMessenger`); ``key`` is
    the HMAC key (None: unsigned), ``counts`` the messenger's counters, shared.
    """

    def __init__(
        self,
        keys: Keys,
        scripts: Scripts,
        *,
        sender: str,
        key: bytes | None,
        history_len: int,
        history_ttl_ms: int,
        max_bytes: int,
        counts: dict[str, int],
    ) -> None:
        self.keys = keys
        self.scripts = scripts
        self.client = scripts.client
        self.sender = sender
        self.key = key
        self.history_len = history_len
        self.history_ttl_ms = history_ttl_ms
        self.max_bytes = max_bytes
        self.counts = counts

    def envelope(
        self,
        type: str,
        payload: dict[str, Any] | None,
        target: str,
        agent: str,
        correlation_id: str = "",
        sender: str | None = None,
    ) -> Envelope:
        """A new envelope from this sender (or ``sender``). Raises InvalidIdError."""
        if agent:
            check_id(agent, "agent id")
        return Envelope(
            type=check_type(type),
            sender=self.sender if sender is None else sender,
            sender_agent=agent,
            target=target,
            payload=payload or {},
            correlation_id=correlation_id,
        )

    async def send(self, channel: str, env: Envelope, record: bool, strict: bool) -> Sent:
        """Publish ``env`` on ``channel``, recorded in its history or not.

        ``strict``: retry connection errors and raise RedisUnavailable; otherwise best effort
        (logged, an empty :class:`Sent` returned). Raises MessageTooLargeError.
        """
        try:
            data = encode_message(env, channel, self.key, self.max_bytes)
        except MessageTooLargeError:
            self.counts["too_large"] += 1
            raise
        sid = ""
        try:
            if record:
                published = await ops.publish_message(
                    self.scripts,
                    self.keys,
                    channel,
                    data,
                    history_len=self.history_len,
                    history_ttl_ms=self.history_ttl_ms,
                    max_bytes=self.max_bytes,
                    retry=strict,
                    sharded=sharded(self.client, self.keys, channel),
                )
                receivers, sid = published.receivers, published.stream_id
            elif sharded(self.client, self.keys, channel):
                receivers = int(await self.client.spublish(channel, data))
            else:
                receivers = int(await self.client.publish(channel, data))
        except (*OUTAGE_CAUGHT, RedisUnavailable) as e:
            if not (outage(e) or isinstance(e, RedisUnavailable)):
                raise
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

    async def send_recorded(self, channel: str, env: Envelope) -> Sent:
        return await self.send(channel, env, True, strict=True)
