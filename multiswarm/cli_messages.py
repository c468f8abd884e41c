"""``multiswarm-cli messages``: follow a channel, send a message or a request, read the
dead-letter stream.

Channels are given short (``global``, ``tasks``, ``coordination``, ``agents``, ``events``,
``reply:<id>``, a swarm id) or in full (``<ns>:...``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from typing import Any

import click

from multiswarm import Delivered, Multiswarm
from multiswarm.cli_common import as_json, call, dumps, emit, loads, usage_failure

#: A Redis stream id: milliseconds, optionally ``-sequence``; each part below 2**64.
STREAM_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")


def message_dict(env: Delivered) -> dict[str, Any]:
    """One message as printed by ``tail --json`` (one JSON object per line)."""
    fields = ("channel", "sid", "id", "type", "sender", "sender_agent", "target", "ts_ms")
    return {
        **{f: getattr(env, f) for f in fields},
        "correlation_id": env.correlation_id,
        "signed": bool(env.sig),
        "payload": env.payload,
    }


def _line(env: Delivered) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(env.ts_ms / 1000))
    who = env.sender + (f"/{env.sender_agent}" if env.sender_agent else "")
    to = f" -> {env.target}" if env.target else ""
    body = dumps(env.payload)
    return (
        f"{stamp}.{env.ts_ms % 1000:03d} {env.channel} [{env.sid or '-'}] {env.type} "
        f"{who or '?'}{to} {body}"
    )


def _stream_id(text: str) -> bool:
    match = STREAM_ID.fullmatch(text)
    return match is not None and all(int(part or 0) < 2**64 for part in match.groups())


@click.group()
def messages() -> None:
    """Follow channels, send messages and requests, read dead letters."""


@messages.command("tail")
@click.argument("channel")
@click.option(
    "--since",
    default=None,
    metavar="ID",
    help="First replay the channel history after this stream id ('0': all kept).",
)
@click.option(
    "--count", type=click.IntRange(min=1), default=None, help="Exit after this many messages."
)
@click.option(
    "--timeout-s",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Exit after this many seconds.",
)
@click.pass_context
def tail(
    ctx: click.Context, channel: str, since: str | None, count: int | None, timeout_s: float | None
) -> None:
    """Print messages of CHANNEL as they arrive (history first with --since); with --json one
    JSON object per line."""
    lines = as_json(ctx)
    if since is not None and not _stream_id(since):
        raise usage_failure("--since: expected a stream id such as 1700000000000-0, or 0")

    async def follow(ms: Multiswarm) -> None:
        printed = 0
        async with contextlib.aclosing(ms.tail(channel, since)) as stream:
            async for env in stream:
                click.echo(dumps(message_dict(env)) if lines else _line(env))
                printed += 1
                if count is not None and printed >= count:
                    return

    async def bounded(ms: Multiswarm) -> None:
        # Ctrl-C, SIGTERM and --timeout-s end the tail with status 0; a failure (Redis gone
        # for good) still ends it with its error
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        following = asyncio.ensure_future(follow(ms))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait(
                [following, stopping], timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
            if not following.done():
                following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following

    with contextlib.suppress(KeyboardInterrupt):
        call(ctx, bounded)


@messages.command("send")
@click.argument("target", required=False)
@click.option("--from", "sender", default="cli", show_default=True, help="Sender (swarm) id.")
@click.option("--type", "type_", default=None, help="Message type [default: message].")
@click.option("--payload", default="{}", show_default=True, help="JSON object.")
@click.option("--broadcast", "to_all", is_flag=True, help="Send to every swarm (no TARGET).")
@click.option("--agent", is_flag=True, help="TARGET is an agent id (agents channel).")
@click.option(
    "--request",
    "as_request",
    is_flag=True,
    help="Send a request to swarm TARGET and print its response.",
)
@click.option(
    "--timeout-s",
    type=click.FloatRange(0, min_open=True),
    default=30.0,
    show_default=True,
    help="With --request: how long to wait for the response.",
)
@click.pass_context
def send(
    ctx: click.Context,
    target: str | None,
    sender: str,
    type_: str | None,
    payload: str,
    to_all: bool,
    agent: bool,
    as_request: bool,
    timeout_s: float,
) -> None:
    """Send one message to swarm TARGET (or an agent, or everyone); recorded in history.

    Signed when MULTISWARM_SECRET is set.
    """
    try:
        data = loads(payload)
    except ValueError as e:
        raise usage_failure(f"--payload is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise usage_failure("--payload must be a JSON object")
    if to_all == (target is not None):
        raise usage_failure("give a TARGET or --broadcast (not both)")
    if as_request and (to_all or agent or type_):
        raise usage_failure("--request goes to a swarm TARGET with type 'request'")
    message = {"type": type_ or "message", "payload": data}

    async def go(ms: Multiswarm) -> dict[str, Any]:
        if as_request:
            response = await ms.request(sender, str(target), data, timeout_s)
            return {"response": message_dict(response)}
        if to_all:
            sent = await ms.broadcast(sender, message)
        elif agent:
            sent = await ms.send_to_agent(sender, str(target), message)
        else:
            sent = await ms.send_message(sender, str(target), message)
        return {
            "id": sent.id,
            "channel": sent.channel,
            "sid": sent.stream_id,
            "receivers": sent.receivers,
        }

    out = call(ctx, go)
    emit(
        ctx,
        out,
        (
            dumps(out["response"]["payload"])
            if "response" in out
            else f"{out['id']} on {out['channel']} [{out['sid']}] to {out['receivers']} subscriber(s)"
        ),
    )


@messages.command("dead-letters")
@click.option("--count", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.pass_context
def dead_letters(ctx: click.Context, count: int) -> None:
    """Refused messages, newest first, with their reason; and the counts per reason."""
    out = call(ctx, lambda ms: ms.dead_letters(count))

    def text() -> None:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(out.counts.items()))
        click.echo("counts: " + (counts or "none"))
        for e in out.entries:
            click.echo(f"{e.id} {e.reason} on {e.channel} at {e.receiver}: {e.detail}")

    emit(ctx, out, text)
