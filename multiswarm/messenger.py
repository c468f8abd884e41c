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
stream id. Malformed, unknown and (with a secret) unsigned, forged or replayed messages are
counted and dead-lettered with their reason; they never reach a handler.
See ``docs/messaging.md``.

This module is the facade; sending is :mod:`multiswarm.publisher`, receiving
:mod:`multiswarm.subscription` and handler dispatch with request/response :mod:`multiswarm.rpc`,
all three owned by the :class:`SwarmMessenger`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, Iterable, Sequence
from typing import Any

from multiswarm.config import env_secret
from multiswarm.connection import Client
from multiswarm.envelopes import (
    Delivered,
    Sent,
    check_channel,
    secret_key,
    swarm_channel,
)
from multiswarm.errors import MultiswarmError
from multiswarm.keys import ID_PATTERN, Keys, check_id
from multiswarm.messages import MAX_MESSAGE_BYTES, Envelope
from multiswarm.publisher import Publisher
from multiswarm.rpc import Dispatcher, MessageHandler, RequestHandler
from multiswarm.scripts import Scripts
from multiswarm.subscription import Subscription

__all__ = ["STAT_NAMES", "MessageHandler", "RequestHandler", "Sent", "SwarmMessenger"]

log = logging.getLogger(__name__)

STAT_NAMES = (
    "sent",
    "received",
    "broadcasts",
    "targeted",
    "dropped",
    "rejected",
    "handler_errors",
    "active_subscriptions",
    "replayed",
    "duplicates",
    "requests",
    "responses",
    "timeouts",
    "too_large",
    "dead_lettered",
    "requests_shed",
)


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
        HMAC-SHA256 secret (``Settings.message_secret``); ``""`` turns signing off. None (the
        default) takes ``MULTISWARM_SECRET`` (:func:`multiswarm.config.env_secret`). With a
        secret every envelope sent is signed and unsigned, forged or replayed ones are refused.
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
    max_queued_requests:
        Requests waiting for a running handler to end (1024); past them a request is answered
        at once with an "overloaded" error (load shedding, counted as ``requests_shed``), so a
        burst keeps memory bounded.
    """

    def __init__(
        self,
        client: Client,
        keys: Keys,
        sender: str = "",
        *,
        agents: Iterable[str] = (),
        secret: str | bytes | None = None,
        hear_own_broadcasts: bool = False,
        history_len: int = 1000,
        history_ttl_ms: int = 3_600_000,
        max_bytes: int = MAX_MESSAGE_BYTES,
        replay_window_ms: int = 300_000,
        max_seen: int = 100_000,
        request_timeout_s: float = 30.0,
        reconnect_timeout_s: float = 10.0,
        dead_letter_len: int = 1000,
        max_concurrent_requests: int = 64,
        max_queued_requests: int = 1024,
    ) -> None:
        self.client = client
        self.keys = keys
        self.sender = sender
        self.address = sender if ID_PATTERN.fullmatch(sender) else f"anon-{uuid.uuid4().hex[:12]}"
        self.agents = {check_id(a, "agent id") for a in agents}
        self._key = secret_key(env_secret() if secret is None else secret)
        self.history_len = history_len
        self.history_ttl_ms = history_ttl_ms
        self.max_bytes = max_bytes
        self.request_timeout_s = request_timeout_s
        self.reconnect_timeout_s = reconnect_timeout_s
        self.counts: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        self.reasons: dict[str, int] = {}
        self._scripts = Scripts(client, reconnect_timeout_s)
        self._out = Publisher(
            keys,
            self._scripts,
            sender=sender,
            key=self._key,
            history_len=history_len,
            history_ttl_ms=history_ttl_ms,
            max_bytes=max_bytes,
            counts=self.counts,
        )
        self._inbox = Subscription(
            client,
            keys,
            self._scripts,
            sender=sender,
            address=self.address,
            agents=self.agents,
            key=self._key,
            hear_own_broadcasts=hear_own_broadcasts,
            max_bytes=max_bytes,
            replay_window_ms=replay_window_ms,
            max_seen=max_seen,
            dead_letter_len=dead_letter_len,
            counts=self.counts,
            reasons=self.reasons,
        )
        self._rpc = Dispatcher(
            keys,
            self._inbox,
            envelope=self._out.envelope,
            send=self._out.send_recorded,
            reply_channel=self.reply_channel,
            request_timeout_s=request_timeout_s,
            reconnect_timeout_s=reconnect_timeout_s,
            max_concurrent_requests=max_concurrent_requests,
            max_queued_requests=max_queued_requests,
            counts=self.counts,
        )

    @property
    def hear_own_broadcasts(self) -> bool:
        """Whether own messages on the global channel are delivered."""
        return self._inbox.hear_own_broadcasts

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
        timeouts, too_large, dead_lettered, requests_shed, and ``reasons`` (refusals per
        reason)."""
        return {**self.counts, "pending_requests": self._rpc.pending, "reasons": dict(self.reasons)}

    # -- sending (multiswarm.publisher) -------------------------------------------------------
    async def publish(
        self,
        channel: str,
        type: str,
        payload: dict[str, Any] | None = None,
        target: str = "",
        *,
        record: bool = False,
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
        env = self._out.envelope(type, payload, target, "")
        sent = await self._out.send(check_channel(self.keys, channel), env, record, strict=False)
        return sent.receivers

    async def send(
        self,
        to: str,
        type: str,
        payload: dict[str, Any] | None = None,
        *,
        agent: str = "",
        correlation_id: str = "",
        record: bool = True,
    ) -> Sent:
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
        env = self._out.envelope(type, payload, check_id(to, "swarm id"), agent, correlation_id)
        return await self._out.send(swarm_channel(self.keys, to), env, record, strict=True)

    async def broadcast(
        self,
        type: str,
        payload: dict[str, Any] | None = None,
        *,
        agent: str = "",
        record: bool = True,
    ) -> Sent:
        """Send a message to every swarm (``<ns>:global``). Errors as :meth:`send`."""
        env = self._out.envelope(type, payload, "", agent)
        return await self._out.send(self.keys.ch_global, env, record, strict=True)

    async def send_to_agent(
        self,
        agent_id: str,
        type: str,
        payload: dict[str, Any] | None = None,
        *,
        from_agent: str = "",
        record: bool = True,
    ) -> Sent:
        """Agent-to-agent: a message on ``<ns>:agents`` addressed to ``agent_id``.

        Messengers hosting that agent (``agents=``) deliver it; others skip it.
        Errors as :meth:`send`.
        """
        env = self._out.envelope(type, payload, check_id(agent_id, "agent id"), from_agent)
        return await self._out.send(self.keys.ch_agents, env, record, strict=True)

    # -- receiving -------------------------------------------------------------------------------
    def on_message(self, type: str, handler: MessageHandler) -> None:
        """Call ``handler(envelope)`` for each delivered message of ``type`` (``"*"``: all).

        Async handlers are awaited in arrival order. An exception in a handler is logged and
        counted in ``handler_errors``; delivery goes on.
        """
        self._rpc.on_message(type, handler)

    def on_request(self, handler: RequestHandler) -> None:
        """Answer ``request`` messages with ``handler(request)``'s return value.

        Handlers run concurrently (``max_concurrent_requests``; up to ``max_queued_requests``
        more wait, past them a request is refused as "overloaded"); an exception is sent back as
        a ``response_error`` (the requester raises :class:`~multiswarm.errors.RequestFailed`).
        """
        self._rpc.on_request(handler)

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

    def listen(
        self,
        channels: Sequence[str],
        ready: asyncio.Event | None = None,
        *,
        since: str | int | None = None,
        give_up_s: float | None = None,
    ) -> AsyncGenerator[tuple[str, Delivered], None]:
        """Yield ``(channel, envelope)`` forever, resubscribing by itself when Redis restarts
        and replaying the recorded messages missed meanwhile; each message once, refused ones
        dead-lettered. Parameters and rules: :meth:`multiswarm.subscription.Subscription.listen`.
        Use it with :func:`contextlib.aclosing` when leaving the loop early.
        """
        return self._inbox.listen(channels, ready, since=since, give_up_s=give_up_s)

    async def history(
        self, channel: str, since: str | int | None = None, count: int | None = None
    ) -> list[Delivered]:
        """Recorded messages of ``channel``, oldest first (at most ``history_len``, 1 h), after
        ``since`` (a stream id, exclusive, or a time in ms, inclusive); at most ``count``.
        See :meth:`multiswarm.subscription.Subscription.history`."""
        return await self._inbox.history(channel, since, count)

    # -- handler dispatch and request/response (multiswarm.rpc) ---------------------------------
    async def start(
        self, channels: Sequence[str] = (), *, since: str | int | None = None
    ) -> SwarmMessenger:
        """Subscribe to :meth:`default_channels` plus ``channels`` and dispatch to the handlers
        in a background task; returns once subscribed.

        Raises
        ------
        RedisUnavailable
            Not subscribed within ``reconnect_timeout_s`` (the loop is stopped).
        """
        if not self._rpc.running:
            await self._rpc.start(
                list(
                    dict.fromkeys(
                        [*self.default_channels(), *(check_channel(self.keys, c) for c in channels)]
                    )
                ),
                since,
            )
        return self

    async def stop(self) -> None:
        """Stop the dispatch loop, the reply listener and running request handlers."""
        await self._rpc.stop()

    async def __aenter__(self) -> SwarmMessenger:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def reply(
        self, request: Envelope, payload: dict[str, Any] | None = None, *, error: str | None = None
    ) -> Sent:
        """Answer ``request`` on its sender's reply channel (``response`` or, with ``error``,
        ``response_error``). Raises InvalidIdError when the request has no valid sender."""
        return await self._rpc.reply(request, payload, error=error)

    async def request(
        self,
        target: str,
        payload: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        *,
        agent: str = "",
    ) -> Delivered:
        """Send a request to swarm ``target`` and wait for its response (a
        :class:`~multiswarm.envelopes.Delivered` whose ``payload`` the responder's handler
        returned). Raises RequestTimeout after ``timeout_s`` (default ``request_timeout_s``),
        RequestFailed when the handler raised. See :meth:`multiswarm.rpc.Dispatcher.request`."""
        return await self._rpc.request(target, payload, timeout_s, agent=agent, sender=self.address)
