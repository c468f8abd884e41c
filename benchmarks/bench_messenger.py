"""Messenger benchmark: publish-to-handler latency and messages/s, against raw redis-py.

Starts a private redis-server, then measures in one process (publisher and subscriber share one
asyncio loop, so both sides' costs are counted):

- ``raw_pubsub``: redis-py ``PUBLISH`` of the same bytes, ``PubSub.get_message`` loop; the floor.
- ``notify``: ``SwarmMessenger.publish`` (plain PUBLISH of an envelope) -> handler, as the worker
  and coordinator use it.
- ``send_recorded``: ``SwarmMessenger.send`` (Lua: XADD to history + PUBLISH) -> handler.
- ``send_signed``: the same with HMAC-SHA256 signing and verification.

Latency: one message at a time, from before the publish call until the handler ran (p50, p99).
Throughput: ``--messages`` published with up to ``--window`` publishes in flight, until the last
one reached the handler. ``--rounds`` interleaved rounds; the median of each value is reported.
Prints one JSON object; updates benchmarks/RESULTS.md between
``<!-- messenger:begin -->`` and ``<!-- messenger:end -->`` (other sections kept).

    python benchmarks/bench_messenger.py [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from multiswarm.envelopes import Delivered
from multiswarm.keys import Keys
from multiswarm.messenger import SwarmMessenger
from multiswarm.redis_server import RedisServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, update_section

PAYLOAD = {"task": "t-000001", "swarm": "parsers", "outcome": "completed", "pad": "x" * 64}

Publish = Callable[[int], Awaitable[Any]]


class Arrivals:
    """Counts handler calls; wakes a waiter when the count reaches its target."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.done = asyncio.Event()

    def hit(self) -> None:
        self.count += 1
        if self.count >= self.target:
            self.done.set()

    async def wait_for(self, target: int, timeout_s: float = 60.0) -> None:
        self.target = target
        if self.count >= target:
            return
        self.done.clear()
        await asyncio.wait_for(self.done.wait(), timeout_s)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    publish: Publish, arrivals: Arrivals, samples: int, messages: int, window: int
) -> dict[str, float]:
    for i in range(min(200, samples)):  # warm-up: connections, script cache
        await publish(i)
        await arrivals.wait_for(arrivals.count + 1)
    lat_us = []
    for i in range(samples):
        target = arrivals.count + 1
        t0 = time.perf_counter()
        await publish(i)
        await arrivals.wait_for(target)
        lat_us.append((time.perf_counter() - t0) * 1e6)
    base = arrivals.count
    sem = asyncio.Semaphore(window)

    async def one(i: int) -> None:
        async with sem:
            await publish(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(messages)))
    await arrivals.wait_for(base + messages)
    elapsed = time.perf_counter() - t0
    return {
        "p50_us": round(statistics.median(lat_us), 1),
        "p99_us": round(pct(lat_us, 0.99), 1),
        "msgs_per_s": round(messages / elapsed),
        "latency_samples": samples,
        "messages": messages,
    }


async def bench_raw(url: str, keys: Keys, args: argparse.Namespace) -> dict[str, float]:
    client = aioredis.from_url(url)
    arrivals = Arrivals()
    channel = keys.ch_swarm("raw")
    data = json.dumps(PAYLOAD).encode() * 2  # about an envelope's size
    pubsub: Any = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)

    async def pump() -> None:
        while True:
            msg = await pubsub.get_message(timeout=1.0)
            if msg is not None:
                arrivals.hit()

    task = asyncio.create_task(pump())
    try:
        return await measure(
            lambda i: client.publish(channel, data),
            arrivals,
            args.samples,
            args.messages,
            args.window,
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pubsub.aclose()
        await client.aclose()


async def bench_messenger(
    url: str, keys: Keys, args: argparse.Namespace, mode: str, secret: str = ""
) -> dict[str, float]:
    client = aioredis.from_url(url)
    arrivals = Arrivals()
    sub = SwarmMessenger(client, keys, f"sub-{mode}", secret=secret)
    pub = SwarmMessenger(client, keys, "pub", secret=secret)

    def handler(env: Delivered) -> None:
        arrivals.hit()

    sub.on_message("task_completed", handler)
    await sub.start()
    channel = keys.ch_swarm(sub.sender)

    def publish(i: int) -> Awaitable[Any]:
        if mode == "notify":
            return pub.publish(channel, "task_completed", PAYLOAD)
        return pub.send(sub.sender, "task_completed", PAYLOAD)

    try:
        result = await measure(publish, arrivals, args.samples, args.messages, args.window)
        stats = sub.stats()
        assert stats["dropped"] == stats["rejected"] == stats["handler_errors"] == 0, stats
        return result
    finally:
        await sub.stop()
        await client.aclose()


def write_results(report: dict[str, Any]) -> None:
    rows = "\n".join(
        f"| {name} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | {r['msgs_per_s']:,} |"
        for name, r in report["results"].items()
    )
    update_section(
        "messenger",
        f"""## Messenger (`benchmarks/bench_messenger.py`)

Machine: {report["machine"]}; redis-server {report["redis_server"]} on loopback, redis-py
{report["redis_py"]} (hiredis).

Command: `{report["command"]}` ({report["date"]})

Publish-to-handler latency, one message at a time ({report["latency_samples"]} samples), and
throughput ({report["messages"]} messages, {report["window"]} publishes in flight); publisher and
subscriber in one asyncio process; each value the median of {report["rounds"]} interleaved
rounds.

| path | p50 µs | p99 µs | messages/s |
|---|---:|---:|---:|
{rows}

- `raw_pubsub`: redis-py PUBLISH + `PubSub.get_message`, same bytes, no envelope (the floor).
- `notify`: `SwarmMessenger.publish`, a plain PUBLISH of an envelope: the worker's hot path.
- `send_recorded`: `SwarmMessenger.send`, one Lua script (XADD to history + PUBLISH).
- `send_signed`: `send_recorded` with HMAC-SHA256 signing and verification.

A shared 2-CPU VM is noisy, p99 most of all; compare paths within one run.""",
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    paths: dict[str, list[dict[str, float]]] = {
        "raw_pubsub": [],
        "notify": [],
        "send_recorded": [],
        "send_signed": [],
    }
    with RedisServer() as server:
        info = redis.Redis(port=server.port).info("server")
        for r in range(args.rounds):
            keys = Keys(f"bench{r}")
            paths["raw_pubsub"].append(await bench_raw(server.url, keys, args))
            paths["notify"].append(await bench_messenger(server.url, keys, args, "notify"))
            paths["send_recorded"].append(await bench_messenger(server.url, keys, args, "send"))
            paths["send_signed"].append(
                await bench_messenger(server.url, keys, args, "signed", "bench-secret")
            )
    results = {
        name: {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        for name, runs in paths.items()
    }
    return {
        "benchmark": "messenger",
        "results": results,
        "rounds_detail": paths,
        "machine": machine(),
        "redis_server": info.get("redis_version"),
        "redis_py": redis.__version__,
        "window": args.window,
        "rounds": args.rounds,
        "latency_samples": args.samples,
        "messages": args.messages,
        "command": "python " + " ".join(["benchmarks/bench_messenger.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="Fewer samples (a smoke run).")
    p.add_argument("--samples", type=int, default=None, help="Latency samples per path.")
    p.add_argument("--messages", type=int, default=None, help="Messages per throughput run.")
    p.add_argument("--window", type=int, default=64, help="Publishes in flight.")
    p.add_argument("--rounds", type=int, default=None, help="Interleaved rounds (median).")
    p.add_argument("--no-write", action="store_true", help="Do not update RESULTS.md.")
    args = p.parse_args()
    args.samples = args.samples or (300 if args.quick else 3000)
    args.messages = args.messages or (2000 if args.quick else 20000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    report = asyncio.run(run(args))
    print(json.dumps(report, indent=2))
    if not args.no_write:
        write_results(report)


if __name__ == "__main__":
    main()
