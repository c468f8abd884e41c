"""SwarmMessenger on a real Redis, with peers in separate processes (messenger_peer.py).

Every wait is bounded and waits for a condition (a line from a peer, a queue item, a subscriber
count); delivery order on one subscriber connection is the publish order, so "X did not arrive"
is checked by seeing a later message arrive first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions
from click.testing import CliRunner
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from multiswarm.config import Settings
from multiswarm.connection import Client, connect
from multiswarm.envelopes import Delivered, encode_message
from multiswarm.errors import (
    InvalidIdError,
    MessageTooLargeError,
    RedisUnavailable,
    RequestFailed,
    RequestTimeout,
)
from multiswarm.keys import Keys
from multiswarm.messages import Envelope
from multiswarm.messenger import SwarmMessenger
from multiswarm.redis_server import RedisServer, free_port

from .helpers import stream_entries

PEER = Path(__file__).with_name("messenger_peer.py")
WAIT_S = 30.0


class Peer:
    """A messenger_peer.py child process and its stdout events."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.pid = proc.pid

    async def event(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), WAIT_S)
        if not line:
            raise AssertionError(f"peer exited; its log:\n{self.log.read_text()[-3000:]}")
        event: dict[str, Any] = json.loads(line)
        return event

    async def message(self) -> dict[str, Any]:
        while True:
            event = await self.event()
            if event["event"] == "message":
                return event

    async def messages_until(self, type: str) -> list[dict[str, Any]]:
        """Messages up to and including the first of ``type``."""
        out: list[dict[str, Any]] = []
        while not out or out[-1]["type"] != type:
            out.append(await self.message())
        return out

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.communicate(), WAIT_S)
        except asyncio.TimeoutError:  # reaped all the same: no process or pipe left behind
            self.proc.kill()
            await self.proc.communicate()
            raise


PeerFactory = Callable[..., Awaitable[Peer]]


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[PeerFactory]:
    running: list[Peer] = []

    async def start(
        url: str, namespace: str, swarm: str, *args: str, secret: str | None = None
    ) -> Peer:
        env = {k: v for k, v in os.environ.items() if k != "MULTISWARM_SECRET"}
        if secret is not None:
            env["MULTISWARM_SECRET"] = secret
        log = tmp_path / f"peer-{swarm}-{len(running)}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(PEER),
                "--url",
                url,
                "--namespace",
                namespace,
                "--swarm",
                swarm,
                *args,
                stdout=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        peer = Peer(proc, log)
        running.append(peer)
        event = await peer.event()
        assert event["event"] == "ready", event
        return peer

    yield start
    closed = await asyncio.gather(*(peer.close() for peer in running), return_exceptions=True)
    failed = [e for e in closed if e is not None]
    assert not failed, failed  # every peer closed first, then a slow one is reported


@pytest.fixture(autouse=True)
def _no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MULTISWARM_SECRET", raising=False)


async def started(messenger: SwarmMessenger) -> asyncio.Queue[Delivered]:
    """Start ``messenger`` with a handler that queues every message."""
    queue: asyncio.Queue[Delivered] = asyncio.Queue()
    messenger.on_message("*", queue.put_nowait)
    await messenger.start()
    return queue


async def next_item(queue: asyncio.Queue[Delivered]) -> Delivered:
    return await asyncio.wait_for(queue.get(), WAIT_S)


# -- delivery across processes --------------------------------------------------------------------
async def test_targeted_and_agent_messages_reach_only_their_addressee(
    settings: Settings,
    client: Client,
    keys: Keys,
    peers: PeerFactory,
) -> None:
    beta = await peers(settings.redis_url, keys.ns, "beta", "--agent", "beta.a1")
    alpha = SwarmMessenger(client, keys, "alpha")
    await alpha.send("gamma", "coordination_request", {"n": 0})  # another swarm's channel
    await alpha.send_to_agent("other.a1", "note", {"n": 1})  # another swarm's agent
    sent = await alpha.send("beta", "coordination_request", {"n": 2}, agent="alpha.a0")
    await alpha.send_to_agent("beta.a1", "note", {"n": 3}, from_agent="alpha.a0")
    got = [await beta.message(), await beta.message()]
    assert [(e["channel"], e["type"], e["payload"]["n"]) for e in got] == [
        (keys.ch_swarm("beta"), "coordination_request", 2),
        (keys.ch_agents, "note", 3),
    ]
    assert got[0]["sid"] == sent.stream_id and got[0]["sender"] == "alpha"
    assert got[1]["target"] == "beta.a1"
    assert sent.receivers == 1
    assert alpha.stats()["targeted"] == 4 and alpha.stats()["sent"] == 4


async def test_broadcast_reaches_every_swarm_and_own_only_on_request(
    settings: Settings,
    client: Client,
    keys: Keys,
    peers: PeerFactory,
) -> None:
    alpha = await peers(settings.redis_url, keys.ns, "alpha")
    beta = await peers(settings.redis_url, keys.ns, "beta")
    gamma = SwarmMessenger(client, keys, "gamma")
    loud = SwarmMessenger(client, keys, "loud", hear_own_broadcasts=True)
    delta = SwarmMessenger(client, keys, "delta")
    gamma_q, loud_q = await started(gamma), await started(loud)
    try:
        sent = await gamma.broadcast("leadership_announcement", {"leader": "gamma"})
        assert sent.receivers == 4  # two peers, gamma itself (skipped on receipt), loud
        for peer in (alpha, beta):
            event = await peer.message()
            assert (event["channel"], event["sender"], event["payload"]) == (
                keys.ch_global,
                "gamma",
                {"leader": "gamma"},
            )
        await loud.broadcast("note", {"from": "loud"})
        await delta.broadcast("note", {"from": "delta"})
        # gamma skipped its own broadcast: the first message it handles is loud's
        assert (await next_item(gamma_q)).payload == {"from": "loud"}
        assert [(await next_item(loud_q)).payload for _ in range(3)] == [
            {"leader": "gamma"},
            {"from": "loud"},
            {"from": "delta"},
        ]
        assert gamma.stats()["broadcasts"] == 1
    finally:
        await gamma.stop()
        await loud.stop()


async def test_request_response_across_processes(
    settings: Settings,
    client: Client,
    keys: Keys,
    peers: PeerFactory,
) -> None:
    beta = await peers(settings.redis_url, keys.ns, "beta", "--respond")
    alpha = SwarmMessenger(client, keys, "alpha")  # never started: replies work out of the box
    try:
        response = await alpha.request("beta", {"q": 41}, timeout_s=WAIT_S)
        assert response.type == "response" and response.sender == "beta"
        assert response.payload == {"pid": beta.pid, "echo": {"q": 41}, "swarm": "beta"}
        assert beta.pid != os.getpid()
        many = await asyncio.gather(
            *(alpha.request("beta", {"i": i}, timeout_s=WAIT_S) for i in range(20))
        )
        assert [r.payload["echo"]["i"] for r in many] == list(range(20))
        with pytest.raises(RequestFailed, match="asked to fail") as failed:
            await alpha.request("beta", {"fail": True}, timeout_s=WAIT_S)
        assert failed.value.responder == "beta"
        # a handler that returns no dict: the requester hears why at once (it timed out before)
        with pytest.raises(RequestFailed, match="returns a dict, not list"):
            await alpha.request("beta", {"list": True}, timeout_s=WAIT_S)
        stats = alpha.stats()
        assert stats["requests"] == 23 and stats["responses"] == 23
        assert stats["pending_requests"] == 0
    finally:
        await alpha.stop()


async def test_request_without_responder_raises_typed_timeout(client: Client, keys: Keys) -> None:
    alpha = SwarmMessenger(client, keys, "alpha")
    try:
        with pytest.raises(RequestTimeout) as caught:
            await alpha.request("nobody", {"q": 1}, timeout_s=0.2)
        assert isinstance(caught.value, TimeoutError)
        assert alpha.stats()["timeouts"] == 1 and alpha.stats()["pending_requests"] == 0
    finally:
        await alpha.stop()


async def test_handler_that_raises_does_not_stop_delivery(
    settings: Settings,
    client: Client,
    keys: Keys,
    peers: PeerFactory,
) -> None:
    beta = await peers(settings.redis_url, keys.ns, "beta")
    alpha = SwarmMessenger(client, keys, "alpha")
    await alpha.send("beta", "boom", {"n": 1})
    await alpha.send("beta", "boom", {"n": 2})
    await alpha.send("beta", "after", {"n": 3})
    got = await beta.messages_until("after")
    assert [e["payload"]["n"] for e in got] == [1, 2, 3]
    assert got[-1]["stats"]["handler_errors"] == 2


# -- limits and bad input -------------------------------------------------------------------------
async def test_size_limit_counts_bytes_and_refuses_before_publishing(
    client: Client,
    keys: Keys,
) -> None:
    alpha = SwarmMessenger(client, keys, "alpha")
    beta = SwarmMessenger(client, keys, "beta")
    queue = await started(beta)
    try:
        text = "é" * 600_000  # 600 000 characters, 1 200 000 bytes in UTF-8
        assert len(text) < 1024 * 1024 < len(text.encode())
        with pytest.raises(MessageTooLargeError):
            await alpha.send("beta", "big", {"text": text})
        with pytest.raises(MessageTooLargeError):
            await alpha.publish(keys.ch_swarm("beta"), "big", {"text": text})
        assert await client.xlen(keys.history(keys.ch_swarm("beta"))) == 0
        ascii_ok = await alpha.send("beta", "big", {"text": "a" * 600_000})
        assert (await next_item(queue)).sid == ascii_ok.stream_id  # the refused ones never came
        assert alpha.stats()["too_large"] == 2 and alpha.stats()["sent"] == 1
    finally:
        await beta.stop()


async def test_malformed_and_unknown_messages_are_counted_and_dead_lettered(
    client: Client,
    keys: Keys,
) -> None:
    beta = SwarmMessenger(client, keys, "beta")
    queue = await started(beta)
    channel = keys.ch_swarm("beta")
    try:
        await client.publish(channel, b"not json at all")
        await client.publish(channel, b'{"type": "note", "v": 99}')
        await client.publish(channel, b'{"type": "bad type!"}')
        await client.publish(channel, b'{"sid": "x", "type": "note", "payload": []}')
        await SwarmMessenger(client, keys, "alpha").send("beta", "note", {"ok": True})
        assert (await next_item(queue)).payload == {"ok": True}
        stats = beta.stats()
        assert stats["dropped"] == 4 and stats["received"] == 1
        assert stats["reasons"] == {"malformed": 2, "unsupported_version": 1, "invalid_type": 1}
        entries = await stream_entries(client, keys.message_dlq)
        assert [f[b"reason"] for _, f in entries] == [
            b"malformed",
            b"unsupported_version",
            b"invalid_type",
            b"malformed",
        ]
        assert entries[0][1][b"raw"] == b"not json at all"
        assert entries[0][1][b"channel"] == channel.encode()
        counts = await client.hgetall(keys.message_stats)
        assert counts[b"dlq"] == b"4" and counts[b"dlq:malformed"] == b"2"
    finally:
        await beta.stop()


async def test_ids_channels_and_types_are_validated(client: Client, keys: Keys) -> None:
    alpha = SwarmMessenger(client, keys, "alpha")
    for bad in ("bad id!", "a:b", "{x}", "", "global", "tasks"):
        with pytest.raises(InvalidIdError):
            await alpha.send(bad, "note", {})
    with pytest.raises(InvalidIdError):
        await alpha.send("beta", "bad type!", {})
    with pytest.raises(InvalidIdError):
        await alpha.send_to_agent("no agent", "note", {})
    for channel in ("elsewhere:beta", f"{keys.ns}:a:b", f"{keys.ns}:reply:x y"):
        with pytest.raises(InvalidIdError):
            await alpha.publish(channel, "note", {})
        with pytest.raises(InvalidIdError):
            await alpha.history(channel)
    with pytest.raises(InvalidIdError):
        alpha.on_message("bad type!", print)
    stream = alpha.listen(["nope"])
    with pytest.raises(InvalidIdError):
        await stream.__anext__()
    with pytest.raises(InvalidIdError):
        SwarmMessenger(client, keys, "alpha", agents=["bad agent"])


# -- signing --------------------------------------------------------------------------------------
async def test_signed_messages_unsigned_forged_replayed_and_stale_are_refused(
    settings: Settings,
    client: Client,
    keys: Keys,
    peers: PeerFactory,
) -> None:
    beta = await peers(settings.redis_url, keys.ns, "beta", "--respond", secret="s3cret")
    channel = keys.ch_swarm("beta")
    signed = SwarmMessenger(client, keys, "alpha", secret="s3cret")
    await SwarmMessenger(client, keys, "alpha", secret="").send("beta", "note", {"n": 1})
    await SwarmMessenger(client, keys, "alpha", secret="guess").send("beta", "note", {"n": 2})
    first = await signed.send("beta", "note", {"n": 3})
    ((_, fields),) = await stream_entries(
        client, keys.history(channel), first.stream_id, first.stream_id
    )
    await client.publish(channel, fields[b"m"])  # the same signed bytes again
    # ... and again under a stream id far ahead: refused before the cursor moves, or every
    # message until then read as a duplicate (n=6 was dropped; found in review)
    ahead = f"{int(time.time() * 1000) + 50_000}-0".encode()
    await client.publish(channel, b'{"sid":"' + ahead + b'",' + fields[b"m"][1:])
    old = Envelope(
        type="note",
        sender="alpha",
        target="beta",
        payload={"n": 4},
        ts_ms=int(time.time() * 1000) - 10 * 60 * 1000,
    )
    await client.publish(channel, encode_message(old, channel, b"s3cret"))
    moved = encode_message(
        Envelope(type="note", sender="alpha", payload={"n": 5}), keys.ch_swarm("other"), b"s3cret"
    )
    await client.publish(channel, moved)  # signed for another channel
    await signed.send("beta", "note", {"n": 6})
    got = await beta.messages_until("note")
    got += await beta.messages_until("note")
    assert [e["payload"]["n"] for e in got] == [3, 6]
    stats = got[-1]["stats"]
    assert stats["rejected"] == 6 and stats["received"] == 2
    assert stats["reasons"] == {"unsigned": 1, "forged": 2, "replayed": 2, "stale": 1}
    reasons = [f[b"reason"] for _, f in await stream_entries(client, keys.message_dlq)]
    expected = [b"unsigned", b"forged", b"replayed", b"replayed", b"stale", b"forged"]
    assert sorted(reasons) == sorted(expected)
    # request/response is signed end to end
    response = await signed.request("beta", {"q": 1}, timeout_s=WAIT_S)
    assert response.sig and response.payload["echo"] == {"q": 1}
    await signed.stop()


# -- history and replay ---------------------------------------------------------------------------
async def test_history_since_ttl_and_bound(client: Client, keys: Keys) -> None:
    alpha = SwarmMessenger(client, keys, "alpha")
    channel = keys.ch_swarm("beta")
    sent = [await alpha.send("beta", "note", {"n": i}) for i in range(5)]
    history = await alpha.history(channel)
    assert [m.payload["n"] for m in history] == list(range(5))
    assert [m.sid for m in history] == [s.stream_id for s in sent]
    assert [m.payload["n"] for m in await alpha.history(channel, since=sent[1].stream_id)] == [
        2,
        3,
        4,
    ]
    assert len(await alpha.history(channel, count=2)) == 2
    assert 0 < await client.pttl(keys.history(channel)) <= 3_600_000
    # a late joiner replays what it missed, then gets live messages
    late = SwarmMessenger(client, keys, "late")
    ready = asyncio.Event()
    async with contextlib.aclosing(late.listen([channel], ready, since="0")) as stream:
        seen = [(await asyncio.wait_for(stream.__anext__(), WAIT_S))[1] for _ in range(5)]
        assert [m.payload["n"] for m in seen] == list(range(5))
        assert ready.is_set()
        await alpha.send("beta", "note", {"n": 5})
        _, live = await asyncio.wait_for(stream.__anext__(), WAIT_S)
        assert live.payload["n"] == 5 and late.stats()["replayed"] == 5
    # bounded: ~1000 kept (XADD MAXLEN ~ trims whole stream nodes)
    for i in range(1100):
        await alpha.send("trim", "note", {"i": i})
    assert 1000 <= await client.xlen(keys.history(keys.ch_swarm("trim"))) < 1100


async def test_notifications_are_plain_publish_unless_recorded(client: Client, keys: Keys) -> None:
    """The coordinator/worker contract: publish() -> subscriber count; listen() yields."""
    alpha = SwarmMessenger(client, keys, "worker-1")
    ready = asyncio.Event()
    queue: asyncio.Queue[tuple[str, Delivered]] = asyncio.Queue()

    async def pump() -> None:  # as the worker and coordinator do
        async for channel, env in alpha.listen([keys.ch_tasks], ready):
            queue.put_nowait((channel, env))

    task = asyncio.create_task(pump())
    try:
        await asyncio.wait_for(ready.wait(), WAIT_S)
        assert alpha.stats()["active_subscriptions"] == 1
        assert await alpha.publish(keys.ch_tasks, "task_completed", {"task": "t1"}) == 1
        channel, env = await asyncio.wait_for(queue.get(), WAIT_S)
        assert (channel, env.type, env.payload, env.sid) == (
            keys.ch_tasks,
            "task_completed",
            {"task": "t1"},
            "",
        )
        assert (
            await alpha.publish(keys.ch_tasks, "task_assignment", {}, target="s1", record=True) == 1
        )
        _, env = await asyncio.wait_for(queue.get(), WAIT_S)
        assert env.target == "s1" and env.sid
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [m.type for m in await alpha.history(keys.ch_tasks)] == ["task_assignment"]
    assert alpha.stats()["active_subscriptions"] == 0


async def test_publish_swallows_connection_errors() -> None:
    dead = connect(
        Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_url_explicit=True),
        retry=Retry(NoBackoff(), 0),
    )
    try:
        messenger = SwarmMessenger(dead, Keys("x"), "w", reconnect_timeout_s=0.2)
        assert await messenger.publish("x:tasks", "task_completed", {}) == 0
        assert await messenger.publish("x:tasks", "task_completed", {}, record=True) == 0
        with pytest.raises(RedisUnavailable):
            await messenger.send("beta", "note", {})
        assert messenger.stats()["sent"] == 0
    finally:
        await dead.aclose()


class GatedProxy:
    """TCP proxy to a Redis port whose gate can be shut: new connections are then closed at
    once, so a subscriber behind it stays away for exactly as long as the test wants."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.open = True
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> GatedProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        for t in self._pipes:
            t.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if not self.open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        for r, w in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(r, w))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)


async def test_subscriber_survives_redis_restart_and_replays_the_gap(
    own_redis: RedisServer,
    namespace: str,
    peers: PeerFactory,
) -> None:
    keys = Keys(namespace)
    client = connect(
        Settings(redis_url=own_redis.url, redis_url_explicit=True, namespace=namespace)
    )
    try:
        async with GatedProxy(own_redis.port) as proxy:
            beta = await peers(f"redis://127.0.0.1:{proxy.port}/0", namespace, "beta")
            alpha = SwarmMessenger(client, keys, "alpha", reconnect_timeout_s=WAIT_S)
            await alpha.send("beta", "note", {"n": "before"})
            assert (await beta.message())["payload"]["n"] == "before"
            proxy.open = False  # beta cannot come back until the gap is published
            await asyncio.to_thread(own_redis.restart)
            gap = [await alpha.send("beta", "gap", {"n": i}) for i in range(5)]
            assert [s.receivers for s in gap] == [0] * 5  # nobody heard them live
            proxy.open = True
            deadline = time.monotonic() + WAIT_S
            while await _subscribers(client, keys.ch_swarm("beta")) == 0:
                assert time.monotonic() < deadline, "beta did not resubscribe"
                await asyncio.sleep(0.05)
            await alpha.send("beta", "after", {"n": "after"})
            got = await beta.messages_until("after")
            assert [e["payload"]["n"] for e in got] == [0, 1, 2, 3, 4, "after"]  # once, in order
            assert [e["sid"] for e in got[:5]] == [s.stream_id for s in gap]
            assert got[-1]["stats"]["replayed"] >= 5  # "after" too if it raced the replay
    finally:
        await client.aclose()


async def _subscribers(client: Client, channel: str) -> int:
    """PUBSUB NUMSUB of ``channel``; 0 while this client's pooled connection is the one the
    restart closed (the script layer reconnects its own; this raw call is not retried)."""
    try:
        return int((await client.pubsub_numsub(channel))[0][1])
    except redis.exceptions.ConnectionError:
        return 0


# -- facade and CLI -------------------------------------------------------------------------------
async def test_facade_functions(
    settings: Settings, client: Client, keys: Keys, peers: PeerFactory
) -> None:
    from multiswarm import messaging_api as api
    from multiswarm.api import Multiswarm

    beta = await peers(settings.redis_url, keys.ns, "beta")
    ms = Multiswarm(client, settings)
    assert api.get_messenger(ms, "alpha") is api.get_messenger(ms, "alpha")
    sent = await api.send_message(
        ms, "alpha", "beta", {"type": "coordination_request", "payload": {"need": "cpu"}}
    )
    await api.broadcast(ms, "alpha", {"type": "conflict_detected", "resource": "gpu0"})
    await api.send_message(
        ms, "alpha", "beta", Envelope(type="task_completed", payload={"task": "t9"})
    )
    got = [await beta.message() for _ in range(3)]
    assert [(e["type"], e["payload"]) for e in got] == [
        ("coordination_request", {"need": "cpu"}),
        ("conflict_detected", {"resource": "gpu0"}),
        ("task_completed", {"task": "t9"}),
    ]
    assert got[0]["sid"] == sent.stream_id
    await api.close_messengers(ms)


def _invoke(settings: Settings, *args: str) -> Any:
    from multiswarm.cli import cli
    from multiswarm.cli_messages import messages

    cli.add_command(messages)
    result = CliRunner().invoke(
        cli,
        ["--redis-url", settings.redis_url, "--namespace", settings.namespace, *args],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_send_and_tail(settings: Settings) -> None:
    out = json.loads(
        _invoke(
            settings,
            "messages",
            "send",
            "beta",
            "--from",
            "alpha",
            "--type",
            "coordination_request",
            "--payload",
            '{"n": 1}',
            "--json",
        )
    )
    assert out["channel"] == f"{settings.namespace}:beta" and out["sid"]
    _invoke(settings, "messages", "send", "--broadcast", "--type", "note")
    _invoke(settings, "messages", "send", "beta.a1", "--agent", "--payload", '{"n": 2}')
    lines = _invoke(
        settings, "messages", "tail", "beta", "--since", "0", "--count", "1", "--json"
    ).splitlines()
    assert len(lines) == 1
    msg = json.loads(lines[0])
    assert (msg["type"], msg["sender"], msg["payload"], msg["sid"]) == (
        "coordination_request",
        "alpha",
        {"n": 1},
        out["sid"],
    )
    text = _invoke(settings, "messages", "tail", "global", "--since", "0", "--count", "1")
    assert "note" in text and f"{settings.namespace}:global" in text
    assert "beta.a1" in _invoke(
        settings, "messages", "tail", "agents", "--since", "0", "--count", "1"
    )
    idle = _invoke(settings, "messages", "tail", "tasks", "--timeout-s", "0.2")
    assert idle == ""


async def test_cli_request_and_dead_letters(
    settings: Settings, client: Client, keys: Keys, peers: PeerFactory
) -> None:
    beta = await peers(settings.redis_url, keys.ns, "beta", "--respond")
    out = await asyncio.to_thread(
        _invoke,
        settings,
        "messages",
        "send",
        "beta",
        "--request",
        "--payload",
        '{"q": 7}',
        "--json",
    )
    assert json.loads(out)["response"]["payload"] == {
        "pid": beta.pid,
        "echo": {"q": 7},
        "swarm": "beta",
    }
    await client.publish(keys.ch_swarm("beta"), b"garbage")
    await SwarmMessenger(client, keys, "alpha").send("beta", "note", {})
    await beta.messages_until("note")
    report = json.loads(
        await asyncio.to_thread(_invoke, settings, "messages", "dead-letters", "--json")
    )
    assert report["counts"] == {"dlq": 1, "dlq:malformed": 1}
    assert report["entries"][0]["reason"] == "malformed"
    assert report["entries"][0]["receiver"] == "beta"


async def test_requests_past_the_queue_are_refused_at_once(client: Client, keys: Keys) -> None:
    # A burst beyond the running handlers and the queue is answered "overloaded" at once
    # (load shedding): before, each request queued a task of its own, without bound.
    release = asyncio.Event()

    async def slow(request: Delivered) -> dict[str, Any]:
        await release.wait()
        return {"i": request.payload["i"]}

    beta = SwarmMessenger(client, keys, "beta", max_concurrent_requests=1, max_queued_requests=2)
    beta.on_request(slow)
    await beta.start()
    alpha = SwarmMessenger(client, keys, "alpha")
    try:
        calls = [
            asyncio.ensure_future(alpha.request("beta", {"i": i}, timeout_s=WAIT_S))
            for i in range(6)
        ]
        async with asyncio.timeout(WAIT_S):  # all six in, three shed: answered while it waits
            while beta.stats()["received"] < 6 or sum(c.done() for c in calls) < 3:
                await asyncio.sleep(0.05)
        shed = [c for c in calls if c.done()]
        assert len(shed) == 3
        for call in shed:
            with pytest.raises(RequestFailed, match="overloaded"):
                call.result()
        assert beta.stats()["requests_shed"] == 3
        release.set()
        answered = await asyncio.gather(*(c for c in calls if c not in shed))
        assert len({r.payload["i"] for r in answered}) == 3
    finally:
        release.set()
        await alpha.stop()
        await beta.stop()
