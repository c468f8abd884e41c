"""The messaging scripts: a channel's history stream, and the message dead-letter stream."""

from __future__ import annotations

import msgspec

from multiswarm.keys import Keys
from multiswarm.ops.script import Script, ScriptRunner


class Published(msgspec.Struct, array_like=True, frozen=True):
    """publish_message's reply: subscribers reached and the history stream id."""

    receivers: int
    stream_id: str


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """What dead_letter_message records (ARGV of the script)."""

    reason: str
    detail: str
    channel: str
    receiver: str
    raw: bytes


PUBLISH = Script("publish_message", Published, request_id=True)
DEAD_LETTER = Script("dead_letter_message", str, request_id=True)
WATCH_EVENTS = Script(
    "watch_events", int, by_nature="sets the notice's expiry from now; a repeat sets it again"
)


async def watch_events(scripts: ScriptRunner, keys: Keys, ttl_ms: int) -> None:
    """Say that task events are listened to for the next ``ttl_ms`` ms (decision 37)."""
    await WATCH_EVENTS(scripts, [keys.events_watch], [ttl_ms])


async def publish_message(
    scripts: ScriptRunner,
    keys: Keys,
    channel: str,
    data: bytes,
    *,
    history_len: int,
    history_ttl_ms: int,
    max_bytes: int,
    retry: bool,
    sharded: bool = False,
) -> Published:
    """Append ``data`` to the channel's history and publish it, in one step (``sharded``:
    with ``SPUBLISH``, on a Redis Cluster)."""
    return await PUBLISH(
        scripts,
        [keys.history(channel)],
        [channel, data, history_len, history_ttl_ms, max_bytes, "1" if sharded else "0"],
        retry=retry,
    )


async def dead_letter_message(
    scripts: ScriptRunner, keys: Keys, letter: DeadLetter, *, keep: int, retry: bool
) -> str:
    """Record a refused message; the dead-letter entry id."""
    return await DEAD_LETTER(
        scripts,
        [keys.message_dlq, keys.message_stats],
        [letter.reason, letter.detail, letter.channel, letter.receiver, letter.raw, keep],
        retry=retry,
    )
