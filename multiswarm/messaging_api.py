"""Messaging functions behind the :class:`~multiswarm.api.Multiswarm` facade.

Plain async functions over anything with ``client``, ``keys`` and ``settings`` (the facade), so
``api.py`` only delegates: ``send_message(from, to, message)``, ``broadcast(from, message)``,
``get_messenger(swarm_id)``. One messenger per swarm id is kept per facade and stopped by
:func:`close_messengers`.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, Protocol

from multiswarm.config import Settings
from multiswarm.connection import Client
from multiswarm.envelopes import Sent
from multiswarm.keys import Keys, check_id
from multiswarm.messages import Envelope
from multiswarm.messenger import SwarmMessenger

#: Message type used when a message dict names none.
DEFAULT_TYPE = "message"


class Host(Protocol):
    """What the facade offers: a client, the namespace's keys, the settings."""

    client: Client
    keys: Keys
    settings: Settings


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


async def close_messengers(host: Host) -> None:
    """Stop every messenger :func:`get_messenger` created for ``host``."""
    for messenger in _messengers.pop(host, {}).values():
        await messenger.stop()
