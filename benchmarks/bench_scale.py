"""What one Redis pays per operation as the deployment grows: 1,000 and 10,000 swarms.

For each size, on a fresh private ``redis-server``: ``--workers`` workers host the swarms (100
each by default; four capability sets), every worker beats, the registry reaps, and the leader
runs its safety-net dispatch round, with nothing to do (Redis CPU at idle); then 100,000 tasks
are queued and the leader dispatches batches of 200. Measured on the server (``SLOWLOG`` with a
0 µs threshold records every script call and its duration): Redis time per dispatch call and per
heartbeat, the registry's reap round, one worker leaving (its tasks handed back; the running-task
count is in the table), Redis CPU (%) at idle, and the slowest script of the measured phases.

Run against another checkout for a before/after table (the script uses only the public API):

    PYTHONPATH=/work/main python benchmarks/bench_scale.py --no-results --json-out /tmp/main.json
    python benchmarks/bench_scale.py --baseline /tmp/main.json

Prints one JSON object and updates the ``scale`` section of ``benchmarks/RESULTS.md``; then
runs ``bench_partitions.py`` (Redis CPU per master of a 3-master cluster, P = 1 vs 3; skip
with ``--no-cluster``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _results import machine, update_section  # benchmarks/_results.py, shared by the bench scripts
from _slowlog import record, script_times, summary

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.coordinator import SwarmCoordinator
from multiswarm.keys import Keys
from multiswarm.redis_server import RedisServer
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

CAPSETS = 4
BATCH = 200
BEAT_TIMEOUT_MS = 30_000
SUBMIT_CHUNK = 500
#: Scripts at or above this many µs are named in the report (the issue's bound).
BOUND_US = 10_000


async def cpu_s(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def idle_round(
    registry: SwarmRegistry, coordinator: SwarmCoordinator, workers: list[str], seconds: float
) -> None:
    """The deployment with nothing to do: beats every 5 s per worker (spread), a registry reap
    every 5 s, the leader's safety-net dispatch and deadline rounds every 2 s."""
    start = time.monotonic()
    beat_every = 5.0 / max(1, len(workers))
    next_beat = next_reap = next_leader = start
    i = 0
    while (now := time.monotonic()) - start < seconds:
        if now >= next_beat:
            await registry.heartbeat(workers[i % len(workers)], {"running": 0}, random.random())
            i += 1
            next_beat += beat_every
        if now >= next_reap:
            await registry.reap_workers(BEAT_TIMEOUT_MS)
            next_reap += 5.0
        if now >= next_leader:
            await coordinator.dispatch_once()
            await coordinator.reap_once()
            next_leader += 2.0
        await asyncio.sleep(max(0.0, min(next_beat, next_reap, next_leader) - time.monotonic()))


async def measure(
    url: str, swarms: int, workers: int, tasks: int, rounds: int, idle_s: float
) -> dict[str, Any]:
    settings = Settings(redis_url=url, redis_url_explicit=True, namespace="bench")
    client = connect(settings)
    try:
        scripts, keys = Scripts(client), Keys(settings.namespace)
        registry = SwarmRegistry(scripts, keys, max_swarms=swarms + 1)
        store = TaskStore(scripts, keys)
        t0 = time.perf_counter()
        per = swarms // workers
        wids = [f"w{w}" for w in range(workers)]
        for w, wid in enumerate(wids):
            specs = [
                swarm_spec(f"s{w * per + j}", [f"c{(w * per + j) % CAPSETS}"], agents=4)
                for j in range(per)
            ]
            await registry.host_swarms(wid, {"host": "bench"}, specs)
        setup_s = time.perf_counter() - t0
        coordinator = SwarmCoordinator(
            scripts,
            keys,
            lease_ms=600_000,
            batch_size=BATCH,
            heartbeat_timeout_ms=BEAT_TIMEOUT_MS,
        )
        assert await coordinator.election.try_acquire()
        await client.config_set("slowlog-max-len", 1_000_000)
        await record(client, True)

        cpu0, w0 = await cpu_s(client), time.monotonic()
        await idle_round(registry, coordinator, wids, idle_s)
        idle_cpu = (await cpu_s(client) - cpu0) / (time.monotonic() - w0) * 100
        idle_times = await script_times(client)

        await record(client, False)  # submissions are the task side's: not measured here
        t0 = time.perf_counter()
        for start in range(0, tasks, SUBMIT_CHUNK):
            await store.submit(
                [
                    (task_spec("bench.tasks:noop", id=f"t{i}", capabilities=[f"c{i % CAPSETS}"]), i)
                    for i in range(start, min(tasks, start + SUBMIT_CHUNK))
                ]
            )
        submit_s = time.perf_counter() - t0
        await record(client, True)

        walls, assigned = [], 0
        for _ in range(rounds):
            t0 = time.perf_counter()
            assigned += await coordinator.dispatch_once()
            walls.append(time.perf_counter() - t0)
        dispatch_times = await script_times(client)

        beat_wall = time.perf_counter()
        for wid in wids:
            await registry.heartbeat(wid, {"running": 0}, random.random())
        beat_wall = (time.perf_counter() - beat_wall) / len(wids)
        beat_times = await script_times(client)

        await registry.reap_workers(BEAT_TIMEOUT_MS)
        reap_idle = await script_times(client)
        running = await client.zcard(keys.leases)
        await registry.reap_workers(BEAT_TIMEOUT_MS, worker_id=wids[0], graceful=True)
        reap_one = await script_times(client)

        measured = idle_times + dispatch_times + beat_times + reap_idle + reap_one
        slowest = max(measured, key=lambda nt: nt[1])
        return {
            "swarms": swarms,
            "workers": workers,
            "tasks_queued": tasks,
            "setup_s": round(setup_s, 1),
            "submit_s": round(submit_s, 1),
            "redis_cpu_idle_pct": round(idle_cpu, 1),
            "idle_s": idle_s,
            "idle_scripts": {n: summary(idle_times, n) for n in sorted({n for n, _ in idle_times})},
            "dispatch": {
                **summary(dispatch_times, "dispatch_tasks"),
                "rounds": rounds,
                "assigned": assigned,
                "redis_ms_per_round": round(
                    sum(t for n, t in dispatch_times if n == "dispatch_tasks") / rounds / 1000, 1
                ),
                "round_wall_ms": round(sum(walls) / len(walls) * 1000, 1),
            },
            "heartbeat": {
                **summary(beat_times, "heartbeat_worker"),
                "wall_ms": round(beat_wall * 1000, 3),
            },
            "reap_round": summary(reap_idle, "reap_workers"),
            "reap_one_worker": {**summary(reap_one, "reap_workers"), "tasks_in_leases": running},
            "slowest_script": {"name": slowest[0], "ms": round(slowest[1] / 1000, 3)},
            "over_bound": sorted({n for n, t in measured if t >= BOUND_US}),
        }
    finally:
        await client.aclose()


def row(label: str, r: dict[str, Any]) -> str:
    d, h = r["dispatch"], r["heartbeat"]
    return (
        f"| {label} | {r['swarms']:,} | {d.get('mean_ms')} / {d.get('max_ms')} | "
        f"{d['redis_ms_per_round']} | {d['round_wall_ms']} | {h.get('mean_ms')} / {h.get('max_ms')} | "
        f"{r['reap_round'].get('mean_ms')} | {r['reap_one_worker'].get('mean_ms')} "
        f"({r['reap_one_worker']['tasks_in_leases']:,}) | {r['redis_cpu_idle_pct']} | "
        f"{r['slowest_script']['name']} {r['slowest_script']['ms']} |"
    )


def update_results(report: dict[str, Any]) -> None:
    lines = [
        "## Scale: costs per operation at 1,000 and 10,000 swarms (`benchmarks/bench_scale.py`)",
        "",
        f"Machine: {report['machine']}; {report['redis']} on loopback; 1-minute load average "
        f"{report.get('load_avg', '?')} at the end (other jobs ran: times vary by up to 2x)  ",
        f"Command: `{report['command']}`",
        "",
        f"Workers ({report['workers']}) host the swarms (four capability sets, capacity 8 each) "
        f"and beat; {report['tasks']:,} tasks queued; the leader dispatches {report['rounds']} "
        f"rounds of {BATCH}. Times are Redis time per script call (SLOWLOG), mean / max in ms; "
        "a round is one or more dispatch calls (after: at most 32 tasks or 5 ms each). 'Reap "
        "one' is a worker (100 swarms) leaving, with the tasks in the leases zset in brackets: "
        "it walks them (the task side's running index removes that). CPU at idle over "
        f"{report['idle_s']} s of beats, reaps and safety-net rounds, no tasks.",
        "",
        "| code | swarms | dispatch call ms | Redis ms per round | round wall ms | heartbeat ms"
        " | reap round ms | reap one ms (tasks) | Redis CPU idle % | slowest script ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, runs in (("before (main)", report.get("baseline") or []), ("after", report["runs"])):
        lines += [row(label, r) for r in runs]
    lines += [
        "",
        "Before, dispatch decoded every active swarm record on each call and heartbeats rewrote "
        "every hosted swarm's record; after, dispatch reads per-profile indexes (O(batch x log "
        "swarms)) and a heartbeat writes one memory field (docs/decisions.md).",
    ]
    update_section("scale", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="swarm counts, comma-separated")
    parser.add_argument("--workers", type=int, default=0, help="default: one per 100 swarms")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--idle-s", type=float, default=15.0)
    parser.add_argument("--baseline", help="JSON of a run on other code (its `runs` are shown)")
    parser.add_argument("--json-out", help="also write the JSON report here")
    parser.add_argument("--no-results", action="store_true", help="do not update RESULTS.md")
    parser.add_argument(
        "--no-cluster",
        action="store_true",
        help="skip the 3-master cluster run of P = 1 vs 3 partitions (bench_partitions.py)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    runs, redis = [], "?"
    for swarms in sizes:
        workers = args.workers or max(1, swarms // 100)
        with RedisServer() as server:
            version = subprocess.run(
                [server.binary, "--version"], capture_output=True, text=True, check=False
            ).stdout.split()
            redis = next((w.split("=", 1)[1] for w in version if w.startswith("v=")), "?")
            redis = f"{Path(server.binary).name} {redis}"
            runs.append(
                asyncio.run(
                    measure(server.url, swarms, workers, args.tasks, args.rounds, args.idle_s)
                )
            )
    report: dict[str, Any] = {
        "benchmark": "scale",
        "runs": runs,
        "workers": args.workers or "1 per 100 swarms",
        "tasks": args.tasks,
        "rounds": args.rounds,
        "idle_s": args.idle_s,
        "machine": machine(),
        "load_avg": round(os.getloadavg()[0], 1),
        "redis": redis,
        "command": "python benchmarks/bench_scale.py"
        + (f" --sizes {args.sizes}" if args.sizes != "1000,10000" else "")
        + (" --baseline <main's JSON>" if args.baseline else ""),
    }
    if args.baseline:
        report["baseline"] = json.loads(Path(args.baseline).read_text())["runs"]
    print(json.dumps(report, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    if not args.no_results:
        update_results(report)
    if not args.no_cluster:
        # Redis CPU per master for P = 1 vs 3: its own script (and RESULTS.md section), run
        # here too so that one command gives every figure of issue 12
        subprocess.run(
            [sys.executable, str(Path(__file__).with_name("bench_partitions.py"))]
            + (["--no-results"] if args.no_results else []),
            check=True,
        )


if __name__ == "__main__":
    main()
