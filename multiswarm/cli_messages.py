"""``multiswarm-cli messages``: follow a channel, send a message or a request, read the
dead-letter stream.

Registered on the main group by ``cli.py`` (``cli.add_command(messages)``). Channels are given
short (``global``, ``tasks``, ``coordination``, ``agents``, ``events``, ``reply:<id>``, a swarm
id) or in full (``<ns>:...``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import click

from multiswarm.cli_common import emit as _emit
from multiswarm.cli_common import run_async as _run
from multiswarm.envelopes import Delivered, resolve_channel
from multiswarm.errors import MultiswarmError
from multiswarm.keys import Keys
from multiswarm.messenger import SwarmMessenger
from multiswarm.scripts import Scripts


def message_dict(env: Delivered) -> dict[str, Any]:
    """One message as printed by ``tail --json`` (one JSON object per line)."""
    return {
        "channel": env.channel,
        "sid": env.sid,
        "id": env.id,
        "type": env.type,
        "sender": env.sender,
        "sender_agent": env.sender_agent,
        "target": env.target,
        "ts_ms": env.ts_ms,
        "correlation_id": env.correlation_id,
        "signed": bool(env.sig),
        "payload": env.payload,
    }


def _line(env: Delivered) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(env.ts_ms / 1000))
    who = env.sender + (f"/{env.sender_agent}" if env.sender_agent else "")
    to = f" -> {env.target}" if env.target else ""
    body = json.dumps(env.payload, sort_keys=True, default=str)
    return (
        f"{stamp}.{env.ts_ms % 1000:03d} {env.channel} [{env.sid or '-'}] {env.type} "
        f"{who or '?'}{to} {body}"
    )


def _channel(keys: Keys, name: str) -> str:
    try:
        return resolve_channel(keys, name)
    except MultiswarmError as e:
        raise click.BadParameter(str(e), param_hint="CHANNEL") from e


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
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Exit after printing this many messages.",
)
@click.option("--timeout-s", type=float, default=None, help="Exit after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def tail(
    ctx: click.Context,
    channel: str,
    since: str | None,
    count: int | None,
    timeout_s: float | None,
    as_json: bool,
) -> None:
    """Print messages of CHANNEL as they arrive (history first with --since)."""

    async def follow(scripts: Scripts, keys: Keys) -> int:
        ch = _channel(keys, channel)
        messenger = SwarmMessenger(scripts.client, keys, sender="cli", hear_own_broadcasts=True)
        printed = 0

        async def loop() -> None:
            nonlocal printed
            async with contextlib.aclosing(messenger.listen([ch], since=since)) as stream:
                async for _ch, env in stream:
                    click.echo(
                        json.dumps(message_dict(env), sort_keys=True, default=str)
                        if as_json
                        else _line(env)
                    )
                    printed += 1
                    if count is not None and printed >= count:
                        return

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(loop(), timeout_s)
        return printed

    with contextlib.suppress(KeyboardInterrupt):
        _run(ctx, follow)


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
    type=float,
    default=30.0,
    show_default=True,
    help="With --request: how long to wait for the response.",
)
@click.option("--json", "as_json", is_flag=True)
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
    as_json: bool,
) -> None:
    """Send one message to swarm TARGET (or an agent, or everyone); recorded in history.

    Signed when MULTISWARM_SECRET is set.
    """
    try:
        data = json.loads(payload)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--payload") from e
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--payload")
    if to_all == (target is not None):
        raise click.UsageError("give a TARGET or --broadcast (not both)")
    if as_request and (to_all or agent or type_):
        raise click.UsageError("--request goes to a swarm TARGET with type 'request'")
    kind = type_ or "message"

    async def go(scripts: Scripts, keys: Keys) -> dict[str, Any]:
        messenger = SwarmMessenger(scripts.client, keys, sender=sender, reconnect_timeout_s=5.0)
        try:
            if as_request:
                assert target is not None
                response = await messenger.request(target, data, timeout_s)
                return {"response": message_dict(response)}
            if to_all:
                sent = await messenger.broadcast(kind, data)
            elif agent:
                assert target is not None
                sent = await messenger.send_to_agent(target, kind, data)
            else:
                assert target is not None
                sent = await messenger.send(target, kind, data)
            return {
                "id": sent.id,
                "channel": sent.channel,
                "sid": sent.stream_id,
                "receivers": sent.receivers,
            }
        finally:
            await messenger.stop()

    out = _run(ctx, go)
    _emit(
        out,
        as_json,
        lambda: click.echo(
            json.dumps(out["response"]["payload"], sort_keys=True)
            if "response" in out
            else f"{out['id']} on {out['channel']} [{out['sid']}] to {out['receivers']} subscriber(s)"
        ),
    )


@messages.command("dead-letters")
@click.option("--count", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dead_letters(ctx: click.Context, count: int, as_json: bool) -> None:
    """Refused messages, newest first, with their reason; and the counts per reason."""

    async def read(scripts: Scripts, keys: Keys) -> dict[str, Any]:
        raw: Any = await scripts.client.xrevrange(keys.message_dlq, "+", "-", count=count)
        stats: Any = await scripts.client.hgetall(keys.message_stats)

        def s(v: bytes | str) -> str:
            return v.decode(errors="replace") if isinstance(v, bytes) else v

        entries = [{"id": s(i), **{s(k): s(v) for k, v in f.items()}} for i, f in raw]
        return {"entries": entries, "counts": {s(k): int(v) for k, v in stats.items()}}

    out = _run(ctx, read)

    def table() -> None:
        click.echo(
            "counts: " + (", ".join(f"{k} {v}" for k, v in sorted(out["counts"].items())) or "none")
        )
        for e in out["entries"]:
            click.echo(
                f"{e['id']} {e.get('reason')} on {e.get('channel')} at "
                f"{e.get('receiver')}: {e.get('detail')}"
            )

    _emit(out, as_json, table)
