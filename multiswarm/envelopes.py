"""Pure logic of the messenger: channel names, wire framing, signing, replay windows, records.

Nothing here talks to Redis, so every rule is unit-testable. The wire format (see
``docs/messaging.md``):

- an envelope is the msgspec JSON of :class:`~multiswarm.messages.Envelope`;
- a signed envelope is that JSON with ``,"sig":"<64 hex>"`` appended as its last member; the HMAC
  is computed over ``channel + "\\n" + <the JSON without sig>``, byte for byte, so a receiver
  verifies the bytes it got and never re-encodes (no canonicalisation ambiguity across languages);
- a message recorded in history is published with its stream id spliced in as the first member
  (``{"sid":"<ms>-<seq>",...}``); plain notifications have no ``sid``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections import OrderedDict

import msgspec

from multiswarm.errors import InvalidIdError, MessageRejected, MessageTooLargeError
from multiswarm.keys import ID_PATTERN, Keys, check_id
from multiswarm.messages import MAX_MESSAGE_BYTES, Envelope

#: The message types the system itself sends; any other type matching TYPE_PATTERN is allowed.
MESSAGE_TYPES = (
    "coordination_request",
    "task_assignment",
    "task_completed",
    "resource_allocation_request",
    "leadership_announcement",
    "conflict_detected",
    "request",
    "response",
    "response_error",
)

#: Message types: ids plus ':' (e.g. ``swarm.agent.started``, ``myapp:ping``).
TYPE_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")

#: Envelope schema versions this code understands.
SUPPORTED_VERSIONS = frozenset({1})

#: Channel suffixes with a fixed meaning; a swarm may not use them as its id on the bus.
RESERVED_CHANNEL_NAMES = frozenset({"global", "coordination", "agents", "tasks", "events", "reply"})

#: What follows ``<ns>:`` in a partition's own wake-up channels (:attr:`Keys.ch_tasks`,
#: :attr:`Keys.ch_coordination` of partition ``k`` > 0): never a swarm channel, which has no ':'.
_PARTITION_CHANNEL = re.compile(r"(?:tasks|coordination):p[1-9][0-9]{0,5}")

#: Rejection reasons (dead-letter ``reason`` field and stats keys).
REASONS = (
    "malformed",
    "too_large",
    "unsupported_version",
    "invalid_type",
    "unsigned",
    "forged",
    "stale",
    "replayed",
)

_SIG_PREFIX = b',"sig":"'
_SIG_SUFFIX_LEN = len(_SIG_PREFIX) + 64 + 2  # ,"sig":"<64 hex>"}
_SID_PREFIX = b'{"sid":"'


class Delivered(Envelope, kw_only=True, omit_defaults=True):
    """An envelope as received: the :class:`Envelope` fields plus where it came from.

    Attributes
    ----------
    sid:
        Stream id of the history entry (``"<ms>-<seq>"``, server clock) or ``""`` for a
        notification that was not recorded. Pass it as ``since`` to replay what followed.
    channel:
        Channel it arrived on (set by the receiver, never taken from the wire).
    """

    sid: str = ""
    channel: str = ""


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


_delivered_decoder = msgspec.json.Decoder(Delivered)
_encoder = msgspec.json.Encoder()


# -- channels ----------------------------------------------------------------------------------
def swarm_channel(keys: Keys, swarm_id: str) -> str:
    """Targeted channel of ``swarm_id``. Raises InvalidIdError for malformed or reserved ids."""
    check_id(swarm_id, "swarm id")
    if swarm_id in RESERVED_CHANNEL_NAMES:
        raise InvalidIdError(f"swarm id {swarm_id!r} is reserved for the {swarm_id} channel")
    return keys.ch_swarm(swarm_id)


def check_channel(keys: Keys, channel: str) -> str:
    """Return ``channel`` if it is one of the namespace's channels, else raise InvalidIdError.

    Valid: ``<ns>:<name>`` with ``name`` an id (the fixed channels, swarm channels and
    user topics), ``<ns>:reply:<id>`` (reply channels) and the wake-up channels of a
    coordination partition, ``<ns>:tasks:p<k>`` and ``<ns>:coordination:p<k>`` (decision 44).
    """
    prefix = keys.ns + ":"
    if isinstance(channel, str) and channel.startswith(prefix):
        rest = channel[len(prefix) :]
        if _PARTITION_CHANNEL.fullmatch(rest):
            return channel
        if rest.startswith("reply:"):
            rest = rest[len("reply:") :]
        if ID_PATTERN.fullmatch(rest):
            return channel
    raise InvalidIdError(
        f"invalid channel {channel!r}: expected {prefix}<id> or {prefix}reply:<id>"
    )


def resolve_channel(keys: Keys, name: str) -> str:
    """A channel from a short name (``global``, ``tasks``, ``reply:<id>``, a swarm id) or a
    full name (``<ns>:...``). Raises InvalidIdError."""
    if name.startswith(keys.ns + ":"):
        return check_channel(keys, name)
    if name in RESERVED_CHANNEL_NAMES - {"reply"} or name.startswith("reply:"):
        return check_channel(keys, f"{keys.ns}:{name}")
    return swarm_channel(keys, name)


def check_type(type: str) -> str:
    """Return ``type`` if it matches :data:`TYPE_PATTERN`, else raise InvalidIdError."""
    if not isinstance(type, str) or not TYPE_PATTERN.fullmatch(type):
        raise InvalidIdError(f"invalid message type {type!r}: expected [A-Za-z0-9_.:-]{{1,64}}")
    return type


# -- stream ids ----------------------------------------------------------------------------------
StreamId = tuple[int, int]


def parse_stream_id(sid: str | bytes | int) -> StreamId:
    """``"<ms>-<seq>"``, ``"<ms>"`` or an int of milliseconds -> comparable ``(ms, seq)``.

    Raises
    ------
    ValueError
        Not a stream id.
    """
    if isinstance(sid, int):
        return (sid, 0)
    text = sid.decode() if isinstance(sid, bytes) else sid
    ms, _, seq = text.partition("-")
    return (int(ms), int(seq or 0))


def format_stream_id(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


# -- encoding, signing ----------------------------------------------------------------------------
def _mac(key: bytes, channel: str, body: bytes) -> bytes:
    return hmac.new(key, channel.encode() + b"\n" + body, hashlib.sha256).hexdigest().encode()


def encode_message(
    env: Envelope, channel: str, key: bytes | None = None, limit: int = MAX_MESSAGE_BYTES
) -> bytes:
    """The wire bytes of ``env`` on ``channel``, signed when ``key`` is given.

    Parameters
    ----------
    env:
        Envelope to send; its ``sig`` must be empty (the signature is computed here).
    channel:
        Channel it is published on (part of the signed bytes, so it cannot be moved).
    key:
        HMAC-SHA256 secret, or None for an unsigned message.
    limit:
        Largest encoded message in bytes (UTF-8 bytes, not characters), signature included.

    Raises
    ------
    MessageTooLargeError
        The encoded message is over ``limit`` bytes; nothing was sent.
    """
    body = _encoder.encode(env)
    if key is not None:
        body = body[:-1] + _SIG_PREFIX + _mac(key, channel, body) + b'"}'
    if len(body) > limit:
        raise MessageTooLargeError(f"message is {len(body)} bytes, limit {limit}")
    return body


def unframe(raw: bytes) -> bytes:
    """The envelope bytes of a published frame (the spliced-in ``"sid"`` member removed)."""
    if raw.startswith(_SID_PREFIX):
        end = raw.find(b'"', len(_SID_PREFIX))
        if end > 0 and raw[end + 1 : end + 2] == b",":
            return b"{" + raw[end + 2 :]
    return raw


def verify_signature(key: bytes, channel: str, body: bytes) -> None:
    """Check the HMAC of an unframed envelope.

    Raises
    ------
    MessageRejected
        ``unsigned`` (no trailing ``sig`` member) or ``forged`` (wrong HMAC).
    """
    n = len(body)
    if (
        n < _SIG_SUFFIX_LEN + 2
        or body[n - _SIG_SUFFIX_LEN : n - 66] != _SIG_PREFIX
        or body[-2:] != b'"}'
    ):
        raise MessageRejected("unsigned", "no signature")
    sig = body[n - 66 : n - 2]
    signed = body[: n - _SIG_SUFFIX_LEN] + b"}"
    if not hmac.compare_digest(sig, _mac(key, channel, signed)):
        raise MessageRejected("forged", "signature does not match")


def is_task_event(raw: bytes | str) -> bool:
    """True for a task lifecycle event as the Lua scripts publish it on ``<ns>:events``: an
    unsigned envelope of type ``task.*`` from sender ``redis`` (scripts/lua/lib/02_tasks.lua)."""
    data = raw.encode() if isinstance(raw, str) else raw
    return b'"sender":"redis"' in data and b'"type":"task.' in data and b'"sig"' not in data


def decode_message(
    channel: str,
    raw: bytes | str,
    *,
    limit: int = MAX_MESSAGE_BYTES,
    key: bytes | None = None,
    now_ms: int | None = None,
    window_ms: int = 300_000,
    sid: str = "",
) -> Delivered:
    """Decode and check one received message (live frame or history entry).

    Parameters
    ----------
    channel:
        Channel it arrived on (checked against the signature).
    raw:
        Bytes as published (may carry the ``sid`` frame) or as stored in history.
    limit:
        Largest acceptable message, bytes.
    key:
        When given, the message must be signed with it and ``ts_ms`` within ``window_ms`` of
        ``now_ms``.
    now_ms:
        Reference time for the freshness check: wall clock for live messages, the entry's
        (server-assigned) stream-id time for history.
    sid:
        Stream id known from elsewhere (history entries); overrides the frame's.

    Raises
    ------
    MessageRejected
        With ``reason`` one of :data:`REASONS` except ``replayed`` (see :class:`SeenWindow`).
    """
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > limit + 40:  # the sid frame adds at most ~40 bytes
        raise MessageRejected("too_large", f"{len(data)} bytes, limit {limit}")
    try:
        env = _delivered_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise MessageRejected("malformed", str(e)) from e
    if env.v not in SUPPORTED_VERSIONS:
        raise MessageRejected("unsupported_version", f"schema version {env.v}")
    if not TYPE_PATTERN.fullmatch(env.type):
        raise MessageRejected("invalid_type", f"type {env.type[:80]!r}")
    if sid:
        env.sid = sid
    env.channel = channel
    if key is not None:
        verify_signature(key, channel, unframe(data))
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if abs(now - env.ts_ms) > window_ms:
            raise MessageRejected(
                "stale", f"sent {now - env.ts_ms} ms from the reference time, window {window_ms} ms"
            )
    return env


class SeenWindow:
    """Ids of signed messages seen within the replay window, bounded in count.

    Parameters
    ----------
    window_ms:
        How long an id is remembered after its message's time or its receipt, whichever is
        later (messages older than this are refused as stale anyway).
    max_ids:
        Most ids kept; the oldest are forgotten first. Size it to messages per window.
    """

    def __init__(self, window_ms: int = 300_000, max_ids: int = 100_000) -> None:
        self.window_ms = window_ms
        self.max_ids = max_ids
        self._ids: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def check(self, msg_id: str, now_ms: int | None = None, sent_ms: int = 0) -> None:
        """Remember ``msg_id``; raise MessageRejected("replayed") if it was seen already.

        ``sent_ms``: the message's own time (``ts_ms``). It stays fresh until ``window_ms``
        after it, so its id is kept that long even when it came early: a sender's clock ahead
        of ours (by up to the window, which :func:`decode_message` accepts) made a replay after
        receipt + window pass both checks (found in review)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        ids = self._ids
        while ids:
            oldest, until_ms = next(iter(ids.items()))
            if now <= until_ms and len(ids) < self.max_ids:
                break
            del ids[oldest]
        if msg_id in ids:
            raise MessageRejected("replayed", f"message {msg_id[:64]} seen before")
        ids[msg_id] = max(now, sent_ms) + self.window_ms


def secret_key(secret: str | bytes | None) -> bytes | None:
    """The HMAC key from a secret (None or empty: signing off)."""
    if not secret:
        return None
    return secret.encode() if isinstance(secret, str) else secret
