"""Messaging functions behind the :class:`~multiswarm.api.Multiswarm` facade.

Plain functions over a :class:`~multiswarm.api_types.Host`, bound as facade methods:
``send_message(from, to, message)``, ``broadcast(from, message)``, ``request``, ``tail``,
``dead_letters``, ``get_messenger(swarm_id)``. One messenger per swarm id is kept per facade and
stopped by :func:`close_messengers`.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from multiswarm.api_types import DeadLetter, DeadLetters, Host
from multiswarm.envelopes import Delivered, Sent, resolve_channel
from multiswarm.keys import check_id
from multiswarm.messages import Envelope
from multiswarm.messenger import SwarmMessenger

#: Message type used when a message dict names none.
DEFAULT_TYPE = "message"


_messengers: weakref.WeakKeyDictionary[Any, dict[str, SwarmMessenger]] = weakref.WeakKeyDictionary()


def split_message(message: Mapping[str, Any] | Envelope) -> tuple[str, dict[str, Any]]:
    """``(type, payload)`` of a user message.

    An :class:`Envelope` gives its own; a mapping gives ``message["type"]`` (default
    ``"message"``) and ``message["payload"]`` when present, else the other keys.
    """
    if isinstance(message, Envelope):
        return message.type, dict(message.payload)
    kind = str(message.get("type", DEFAULT_TYPE))
    if "payload" in message:
        payload = message["payload"]
        return kind, dict(payload) if isinstance(payload, Mapping) else {"value": payload}
    return kind, {k: v for k, v in message.items() if k != "type"}


def get_messenger(host: Host, swarm_id: str, **options: Any) -> SwarmMessenger:
    """The messenger of ``swarm_id`` on this facade (created on first use, then reused).

    ``options`` go to :class:`SwarmMessenger` on creation (``agents``, ``secret``...); the
    secret defaults to ``settings.message_secret`` when that is set. Call
    ``await messenger.start()`` to receive (handlers, requests). Raises InvalidIdError.
    """
    check_id(swarm_id, "swarm id")
    per_host = _messengers.setdefault(host, {})
    messenger = per_host.get(swarm_id)
    if messenger is None:
        if host.settings.message_secret:
            options.setdefault("secret", host.settings.message_secret)
        messenger = per_host[swarm_id] = SwarmMessenger(
            host.client,
            host.keys,
            sender=swarm_id,
            reconnect_timeout_s=host.settings.reconnect_timeout_s,
            **options,
        )
    return messenger


async def send_message(
    host: Host, from_swarm: str, to_swarm: str, message: Mapping[str, Any] | Envelope
) -> Sent:
    """Send ``message`` from swarm ``from_swarm`` to swarm ``to_swarm`` (recorded in history).

    Raises
    ------
    InvalidIdError
        Malformed or reserved swarm id, malformed type.
    MessageTooLargeError
        Over 1 MiB encoded (bytes); nothing was sent.
    RedisUnavailable
        Redis unreachable.
    """
    kind, payload = split_message(message)
    return await get_messenger(host, from_swarm).send(to_swarm, kind, payload)


async def broadcast(host: Host, from_swarm: str, message: Mapping[str, Any] | Envelope) -> Sent:
    """Send ``message`` from ``from_swarm`` to every swarm. Errors as :func:`send_message`."""
    kind, payload = split_message(message)
    return await get_messenger(host, from_swarm).broadcast(kind, payload)


async def send_to_agent(
    host: Host, from_swarm: str, agent_id: str, message: Mapping[str, Any] | Envelope
) -> Sent:
    """Send ``message`` to one agent (on the agents channel, recorded). Errors as
    :func:`send_message`."""
    kind, payload = split_message(message)
    return await get_messenger(host, from_swarm).send_to_agent(agent_id, kind, payload)


async def request(
    host: Host,
    from_swarm: str,
    to_swarm: str,
    payload: dict[str, Any] | None = None,
    timeout_s: float | None = None,
) -> Delivered:
    """Send a request to swarm ``to_swarm`` and wait for its response (its ``payload`` is what
    the responder's handler returned).

    Raises
    ------
    RequestTimeout
        No response within ``timeout_s`` seconds [default: 30].
    RequestFailed
        The responder's handler raised.
    """
    return await get_messenger(host, from_swarm).request(to_swarm, payload, timeout_s)


async def tail(
    host: Host, channel: str, since: str | None = None
) -> AsyncGenerator[Delivered, None]:
    """Yield the messages of ``channel`` as they arrive, forever (history after stream id
    ``since`` first; ``"0"``: all kept). ``channel`` is short (``global``, ``tasks``,
    ``coordination``, ``agents``, ``events``, ``reply:<id>``, a swarm id) or full (``<ns>:...``).

    Raises InvalidIdError (bad channel name) on the first iteration, RedisUnavailable when
    Redis stays unreachable for ``settings.reconnect_timeout_s``.
    """
    full = resolve_channel(host.keys, channel)
    messenger = SwarmMessenger(
        host.client,
        host.keys,
        sender="tail",
        secret=host.settings.message_secret or None,
        hear_own_broadcasts=True,
        reconnect_timeout_s=host.settings.reconnect_timeout_s,
    )
    # a follower ends (RedisUnavailable) when Redis stays away past the reconnect window
    give_up = host.settings.reconnect_timeout_s
    async with contextlib.aclosing(
        messenger.listen([full], since=since, give_up_s=give_up)
    ) as stream:
        async for _channel, env in stream:
            yield env


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


async def dead_letters(host: Host, limit: int = 20) -> DeadLetters:
    """The ``limit`` newest refused messages with their reason, and the counts per reason
    (``dlq``: all, ``dlq:<reason>``)."""
    client = host.client
    raw: Any = await host.scripts.read(
        lambda: client.xrevrange(host.keys.message_dlq, "+", "-", count=limit)
    )
    stats: Any = await host.scripts.read(lambda: client.hgetall(host.keys.message_stats))
    entries = []
    for entry_id, fields in raw:
        f = {_text(k): _text(v) for k, v in fields.items()}
        ms = f.pop("ms", "0")
        known = {k: v for k, v in f.items() if k in DeadLetter.__struct_fields__}
        entries.append(DeadLetter(id=_text(entry_id), ms=int(ms or 0), **known))
    return DeadLetters(entries, {_text(k): int(v) for k, v in stats.items()})


async def close_messengers(host: Host) -> None:
    """Stop every messenger :func:`get_messenger` created for ``host``."""
    for messenger in _messengers.pop(host, {}).values():
        await messenger.stop()
