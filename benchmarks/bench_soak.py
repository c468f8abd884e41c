"""Soak: Redis memory stays flat while many no-op tasks pass through, because finished tasks are
pruned as fast as they finish (scripts/lua/prune_tasks.lua).

Usage: python3 benchmarks/bench_soak.py [--tasks N] [--ttl-ms MS] [--mode system|direct]

On a private redis-server, N no-op tasks (~1 KB each with payload and result) go through:
``system`` (default) the real processes, as bench_throughput.py runs them: a registry (result TTL
from ``MULTISWARM_RESULT_TTL_MS``, housekeeping every half TTL), a coordinator and a worker
hosting one swarm of 2 agents; ``direct`` the same scripts driven from this process (leader
dispatch, claim and complete through TaskStore by a fake worker loop, a housekeeping round every
half TTL), for when the processes are too slow for N. Submission keeps at most ``--window``
tasks unfinished. Every ``--sample-s`` seconds: INFO used_memory, DBSIZE, HLEN of the task
hashes, the retained set and the completions stream. Prints one JSON object; writes the table to
RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, update_section

from multiswarm.config import Settings
from multiswarm.connection import Client, connect
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.redis_server import RedisServer
from multiswarm.registry import SwarmRegistry, housekeeping, swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.tasks import PRUNE_BATCH, SUBMIT_CHUNK, TaskStore, task_spec

NS = "soak"
NOOP = "multiswarm.demo_tasks:noop"
PAD = "x" * 300  # payload ~330 B, result the same (noop returns it): ~1 KB a task with its record


async def sample(client: Client, keys: Keys, start: float) -> dict[str, Any]:
    pipe = client.pipeline(transaction=False)
    pipe.info("memory")
    pipe.dbsize()
    pipe.hlen(keys.tasks)
    pipe.hlen(keys.payloads)
    pipe.hlen(keys.results)
    pipe.hlen(keys.task_keyset[3])
    pipe.zcard(keys.task_retained)
    pipe.xlen(keys.completions)
    pipe.hget(keys.stats, "completed")
    (
        mem,
        dbsize,
        tasks,
        payloads,
        results,
        dependents,
        retained,
        completions,
        done,
    ) = await pipe.execute()
    return {
        "t": round(time.monotonic() - start, 1),
        "completed": int(done or 0),
        "used_memory": int(mem["used_memory"]),
        "dbsize": dbsize,
        "tasks": tasks,
        "payloads": payloads,
        "results": results,
        "dependents": dependents,
        "retained": retained,
        "completions": completions,
    }


async def submitter(store: TaskStore, n: int, window: int) -> None:
    """Submit ``n`` tasks, keeping at most ``window`` unfinished (a steady producer)."""
    sent = 0
    while sent < n:
        done = int(await store.client.hget(store.keys.stats, "completed") or 0)
        room = min(window - (sent - done), n - sent)
        if room < SUBMIT_CHUNK // 2 and sent - done > 0:
            await asyncio.sleep(0.05)
            continue
        chunk = [
            (task_spec(NOOP, id=f"n{i}", capabilities=["noop"]), {"i": i, "pad": PAD})
            for i in range(sent, sent + max(1, min(room, SUBMIT_CHUNK)))
        ]
        await store.submit(chunk)
        sent += len(chunk)


async def fake_worker(store: TaskStore, scripts: Scripts, keys: Keys, n: int, ttl_ms: int) -> None:
    """``direct`` mode: leader dispatch, claim, complete and housekeeping from this process."""
    from multiswarm.coordinator import SwarmCoordinator

    registry = SwarmRegistry(scripts, keys)
    await registry.host_swarms(
        "w1",
        {"host": "soak", "pid": os.getpid()},
        [swarm_spec("s", ["noop"], agents=2, capacity=1000)],
    )
    coord = SwarmCoordinator(scripts, keys, lease_ms=30_000, batch_size=500)
    assert await coord.election.try_acquire()
    last_round = time.monotonic()
    done = 0
    while done < n:
        await coord.dispatch_once()
        claimed = await store.claim("s", "w1", 500)
        for c in claimed:
            await store.complete(c.id, c.token, "w1", {"i": c.id, "pad": PAD})
        done += len(claimed)
        if not claimed:
            await asyncio.sleep(0.01)
        if time.monotonic() - last_round > ttl_ms / 2000:
            last_round = time.monotonic()
            await housekeeping(registry, archive_ms=7 * 24 * 3600 * 1000, result_ttl_ms=ttl_ms)
        await registry.heartbeat("w1", {}, 0.0)
    # the registry process keeps pruning after the last completion; so does this loop
    for _ in range(4):
        await asyncio.sleep(ttl_ms / 2000)
        await housekeeping(registry, archive_ms=7 * 24 * 3600 * 1000, result_ttl_ms=ttl_ms)


async def soak(
    url: str, n: int, ttl_ms: int, window: int, sample_s: float, mode: str
) -> dict[str, Any]:
    settings = Settings(redis_url=url, redis_url_explicit=True, namespace=NS)
    keys = Keys(NS)
    client = connect(settings)
    scripts = Scripts(client)
    store = TaskStore(scripts, keys)
    group = None
    samples: list[dict[str, Any]] = []
    try:
        if mode == "system":
            os.environ["MULTISWARM_RESULT_TTL_MS"] = str(ttl_ms)
            group = ProcessGroup(settings, Path(tempfile.mkdtemp(prefix="soak-")))
            group.spawn("registry", ["registry"])
            group.spawn("coordinator", ["coordinator", "--id", "c1"])
            group.spawn("worker", ["worker", "--id", "w1", "--swarm", "s:noop:2"])
            while not await client.get(keys.leader) or not await client.hlen(keys.workers):
                await asyncio.sleep(0.05)
        start = time.monotonic()

        async def take() -> None:
            samples.append(await sample(client, keys, start))
            print(json.dumps(samples[-1]), file=sys.stderr, flush=True)  # progress

        await take()
        work = [asyncio.create_task(submitter(store, n, window))]
        if mode == "direct":
            work.append(asyncio.create_task(fake_worker(store, scripts, keys, n, ttl_ms)))
        while True:
            pending = [t for t in work if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=sample_s)
            else:
                await asyncio.sleep(sample_s)
            for t in work:
                if t.done():
                    t.result()  # a failure ends the run
            await take()
            if samples[-1]["completed"] >= n and all(t.done() for t in work):
                break
            if group is not None and not all(c.alive() for c in group.children):
                raise RuntimeError(f"a role process died; logs in {group.log_dir}")
        wall = time.monotonic() - start
        # after the last completion: everything drains once its TTL has passed
        drain_until = time.monotonic() + ttl_ms / 1000 + 15
        while time.monotonic() < drain_until and samples[-1]["tasks"] > 0:
            await asyncio.sleep(1)
            await take()
        return summarize(samples, n, ttl_ms, wall, mode)
    finally:
        await client.aclose()
        if group is not None:
            group.stop_all()


def summarize(
    samples: list[dict[str, Any]], n: int, ttl_ms: int, wall: float, mode: str
) -> dict[str, Any]:
    """First/peak/last of each series, and the memory growth once the system is warm."""
    run = [s for s in samples if s["completed"] < n] or samples
    warm = [s for s in run if s["completed"] >= n // 10] or run
    half = len(warm) // 2
    early, late = warm[:half] or warm, warm[half:] or warm

    def series(name: str) -> dict[str, int]:
        return {
            "first": samples[0][name],
            "peak": max(s[name] for s in samples),
            "last_during_run": run[-1][name],
            "after_drain": samples[-1][name],
        }

    peak = max(samples, key=lambda s: s["used_memory"])
    # the sample nearest each share of the tasks completed: flat means these stay level
    upto_end = samples[: len(run) + 1]  # the run and the sample that saw the last completion

    def nearest(pct: int) -> dict[str, Any]:
        return min(upto_end, key=lambda s: abs(s["completed"] - n * pct / 100))

    checkpoints = {f"{pct}%": nearest(pct) for pct in (10, 25, 50, 75, 100)}
    per_task = (peak["used_memory"] - samples[0]["used_memory"]) / max(1, peak["tasks"])
    return {
        "mode": mode,
        "tasks": n,
        "result_ttl_ms": ttl_ms,
        "seconds": round(wall, 1),
        "tasks_per_second": round(n / wall, 1),
        "samples": len(samples),
        "used_memory": series("used_memory"),
        "dbsize": series("dbsize"),
        "task_records": series("tasks"),
        "payloads": series("payloads"),
        "results": series("results"),
        "retained": series("retained"),
        "completions_stream": series("completions"),
        "used_memory_peak_first_half_warm": max(s["used_memory"] for s in early),
        "used_memory_peak_second_half_warm": max(s["used_memory"] for s in late),
        "checkpoints": {
            k: {
                "completed": s["completed"],
                "used_memory": s["used_memory"],
                "dbsize": s["dbsize"],
                "tasks": s["tasks"],
            }
            for k, s in checkpoints.items()
        },
        "bytes_per_kept_task": round(per_task),
        "used_memory_if_never_pruned_estimate": round(samples[0]["used_memory"] + per_task * n),
    }


def mib(b: float) -> str:
    return f"{b / 2**20:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--ttl-ms", type=int, default=5_000, help="result TTL [5000]")
    parser.add_argument("--window", type=int, default=2_000, help="most unfinished tasks")
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--mode", choices=("system", "direct"), default="system")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    with RedisServer() as server:
        report = asyncio.run(
            soak(server.url, args.tasks, args.ttl_ms, args.window, args.sample_s, args.mode)
        )
    report["machine"] = machine()
    report["command"] = (
        "python3 benchmarks/bench_soak.py"
        + (f" --tasks {args.tasks}" if args.tasks != 200_000 else "")
        + (f" --mode {args.mode}" if args.mode != "system" else "")
    )
    print(json.dumps(report, indent=2))
    if args.no_write:
        return
    how = (
        "real processes: registry + coordinator + worker (1 swarm, 2 agent processes)"
        if args.mode == "system"
        else "scripts driven from one process: leader dispatch, claim/complete via TaskStore, "
        "housekeeping rounds"
    )
    rows = []
    for label, key, fmt in (
        ("Redis used_memory", "used_memory", mib),
        ("DBSIZE (keys)", "dbsize", str),
        ("task records (HLEN tasks)", "task_records", str),
        ("payloads (HLEN)", "payloads", str),
        ("results (HLEN)", "results", str),
        ("retained set (ZCARD)", "retained", str),
        ("completions stream (XLEN)", "completions_stream", str),
    ):
        s = report[key]
        rows.append(
            f"| {label} | {fmt(s['first'])} | {fmt(s['peak'])} | "
            f"{fmt(s['last_during_run'])} | {fmt(s['after_drain'])} |"
        )
    update_section(
        "soak",
        "\n".join(
            [
                "## Soak: memory over a long run (`benchmarks/bench_soak.py`)",
                "",
                f"Machine: {report['machine']}  ",
                f"Command: `{report['command']}`  ",
                f"How: {how}; result TTL {args.ttl_ms} ms (`MULTISWARM_RESULT_TTL_MS`), housekeeping "
                f"every half TTL ({PRUNE_BATCH} entries per prune_tasks call), at most {args.window} "
                f"tasks unfinished; sampled every "
                f"{args.sample_s} s ({report['samples']} samples).  ",
                f"Run: {report['tasks']} no-op tasks (~1 KB each with payload and result) in "
                f"{report['seconds']} s ({report['tasks_per_second']} tasks/s).",
                "",
                "| series | first | peak | last sample of the run | after drain (TTL + 15 s) |",
                "|---|---|---|---|---|",
                *rows,
                "",
                "Along the run (sample nearest each share of the tasks completed):",
                "",
                "| completed | used_memory | DBSIZE | task records |",
                "|---|---|---|---|",
                *[
                    f"| {c['completed']} ({k}) | {mib(c['used_memory'])} | {c['dbsize']} | {c['tasks']} |"
                    for k, c in report["checkpoints"].items()
                ],
                "",
                f"Once warm (after 10% of the tasks), peak used_memory in the first half of the run "
                f"{mib(report['used_memory_peak_first_half_warm'])}, in the second half "
                f"{mib(report['used_memory_peak_second_half_warm'])}: flat, bounded by completion rate x "
                f"(TTL + housekeeping interval). Kept, a finished task costs "
                f"~{report['bytes_per_kept_task']} B, so never pruning {report['tasks']} tasks would "
                f"need ~{mib(report['used_memory_if_never_pruned_estimate'])}.",
            ]
        ),
    )


if __name__ == "__main__":
    os.environ.pop("MULTISWARM_REDIS_URL", None)
    # a long run is often stopped with kill: stop the role processes and the server cleanly
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()
