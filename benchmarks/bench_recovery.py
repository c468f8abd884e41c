"""Time to plan and apply the recovery of many interrupted swarms (default 1,000).

Each swarm is set up the way a crash leaves it: a worker hosted it, two of its four tasks were
running on that worker and two were queued for it, the worker's progress was saved in the swarm's
state and a snapshot taken, then the worker vanished and the swarm was marked ``interrupted``.

Two identical namespaces are recovered on a private ``redis-server``:

* ``per_swarm`` (baseline): for each swarm in turn, plan it and apply it (every read and each of
  the three apply steps is its own round trip), as an operator loop over ``recover apply`` would;
* ``batched``: ``SwarmRecovery.plan_many`` over all swarms (pipelined reads), then
  ``apply_many`` (each apply step pipelined over 100 swarms) -- what ``recover all`` and the
  state-manager process do.

Both must re-queue every in-flight task exactly once and leave every swarm ``active``.
Prints one JSON object and updates the ``recovery`` section of ``benchmarks/RESULTS.md``.

    python benchmarks/bench_recovery.py            # 1,000 swarms
    python benchmarks/bench_recovery.py --quick    # 100 swarms
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from _results import machine, update_section  # benchmarks/_results.py, shared by the bench scripts

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.coordinator import LeaderElection
from multiswarm.keys import Keys
from multiswarm.ops.leadership import Fence, dispatch_tasks
from multiswarm.recovery import SwarmRecovery
from multiswarm.redis_server import RedisServer
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.state import SwarmStateManager
from multiswarm.tasks import TaskStore, task_spec

TASKS_PER_SWARM = 4
RUNNING_PER_SWARM = 2


async def setup(scripts: Scripts, keys: Keys, swarms: int) -> None:
    """``swarms`` interrupted swarms, each with running and queued tasks of a dead worker."""
    client = scripts.client
    registry = SwarmRegistry(scripts, keys, max_swarms=swarms + 1)
    store = TaskStore(scripts, keys)
    state = SwarmStateManager(scripts, keys)
    election = LeaderElection(scripts, keys, lease_ms=600_000)
    assert await election.try_acquire()
    for i in range(swarms):
        sid, wid = f"s{i}", f"w{i}"
        await registry.host_swarms(
            wid, {"host": "bench"}, [swarm_spec(sid, [f"c{i}"], agents=2, capacity=8)]
        )
        await store.submit(
            [
                (
                    task_spec(
                        "multiswarm.demo_tasks:noop", id=f"{sid}.t{j}", capabilities=[f"c{i}"]
                    ),
                    {"j": j},
                )
                for j in range(TASKS_PER_SWARM)
            ]
        )
        await dispatch_tasks(
            scripts,
            keys,
            Fence(election.epoch, election.holder_id, election.instance),
            strategy="least_loaded",
            batch=100,
            scan=400,
            assign_timeout_ms=30_000,
            heartbeat_timeout_ms=0,
            capsets=[],
        )
        running = [c.id for c in await store.claim(sid, wid, RUNNING_PER_SWARM)]
        now = int(time.time() * 1000)
        await state.save_state(
            sid, {"swarm": sid, "workers": {wid: {"running": running, "agents": 2, "at_ms": now}}}
        )
        await state.create_snapshot(sid, "auto")
    pipe = client.pipeline(transaction=False)
    pipe.delete(keys.workers, keys.heartbeats)  # every host died without being reaped
    await pipe.execute()
    for i in range(swarms):
        await registry.transition(f"s{i}", "interrupted")


async def per_swarm(recovery: SwarmRecovery, ids: list[str]) -> tuple[float, float, int]:
    plan_s = apply_s = 0.0
    requeued = 0
    for sid in ids:
        t0 = time.perf_counter()
        plan = await recovery.plan(sid, quarantine=True)
        t1 = time.perf_counter()
        outcome = await recovery.apply(plan)
        apply_s += time.perf_counter() - t1
        plan_s += t1 - t0
        assert outcome.outcome == "applied", outcome
        requeued += len(outcome.requeued)
    return plan_s, apply_s, requeued


async def batched(recovery: SwarmRecovery, ids: list[str]) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    plans = await recovery.plan_many(ids, quarantine=True)
    t1 = time.perf_counter()
    good = [p for p in plans.values() if not isinstance(p, Exception)]
    assert len(good) == len(ids), [p for p in plans.values() if isinstance(p, Exception)][:3]
    outcomes = await recovery.apply_many(good)
    t2 = time.perf_counter()
    assert all(o.outcome == "applied" for o in outcomes)
    return t1 - t0, t2 - t1, sum(len(o.requeued) for o in outcomes)


async def measure(url: str, swarms: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("per_swarm", "batched"):
        settings = Settings(redis_url=url, redis_url_explicit=True, namespace=f"bench-{mode}")
        client = connect(settings)
        try:
            scripts, keys = Scripts(client), Keys(settings.namespace)
            t0 = time.perf_counter()
            await setup(scripts, keys, swarms)
            setup_s = time.perf_counter() - t0
            recovery = SwarmRecovery(SwarmStateManager(scripts, keys), actor="bench")
            ids = await recovery.discover()
            assert len(ids) == swarms
            fn = per_swarm if mode == "per_swarm" else batched
            plan_s, apply_s, requeued = await fn(recovery, ids)
            assert requeued == swarms * TASKS_PER_SWARM, requeued
            assert await recovery.discover() == []
            active = await SwarmRegistry(scripts, keys).swarm_ids("active")
            assert len(active) == swarms
            counts = await TaskStore(scripts, keys).counts()
            assert counts["ready"] == swarms * TASKS_PER_SWARM, counts
            total = plan_s + apply_s
            out[mode] = {
                "plan_s": round(plan_s, 3),
                "apply_s": round(apply_s, 3),
                "total_s": round(total, 3),
                "swarms_per_s": round(swarms / total, 1) if total else None,
                "tasks_requeued": requeued,
                "setup_s": round(setup_s, 1),
            }
        finally:
            await client.aclose()
    return out


def update_results(report: dict[str, Any]) -> None:
    b, p, s = report["batched"], report["per_swarm"], report["speedup"]
    update_section(
        "recovery",
        "\n".join(
            [
                "## Recovery: plan and apply interrupted swarms (`benchmarks/bench_recovery.py`)",
                "",
                f"Machine: {report['machine']}; {report['redis']} on loopback  ",
                f"Command: `{report['command']}`",
                "",
                f"{report['swarms']} interrupted swarms, {report['tasks_per_swarm']} in-flight tasks "
                f"each ({report['swarms'] * report['tasks_per_swarm']} re-queued, each exactly once).",
                "",
                "| mode | plan s | apply s | total s | swarms/s |",
                "|---|---:|---:|---:|---:|",
                f"| per swarm: plan + apply one after another (baseline) | {p['plan_s']} | "
                f"{p['apply_s']} | {p['total_s']} | {p['swarms_per_s']} |",
                f"| batched: `plan_many` + `apply_many` (`recover all`) | {b['plan_s']} | "
                f"{b['apply_s']} | {b['total_s']} | {b['swarms_per_s']} |",
                "",
                f"Batched / baseline: {s['total']}x faster in total (plan {s['plan']}x, "
                f"apply {s['apply']}x). Planning reads every running task of the namespace once per "
                "call, to find tasks running on workers that are gone; the baseline pays that per "
                "swarm, the batch once.",
            ]
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 swarms instead of 1,000")
    parser.add_argument("--swarms", type=int, default=None)
    parser.add_argument("--no-results", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    swarms = args.swarms or (100 if args.quick else 1000)
    with RedisServer() as server:
        version = subprocess.run(
            [server.binary, "--version"], capture_output=True, text=True, check=False
        ).stdout.split()
        redis = next((w.split("=", 1)[1] for w in version if w.startswith("v=")), "?")
        runs = asyncio.run(measure(server.url, swarms))
    p, b = runs["per_swarm"], runs["batched"]

    def ratio(key: str) -> float | None:
        return round(p[key] / b[key], 1) if b[key] else None

    report = {
        "benchmark": "recovery",
        "swarms": swarms,
        "tasks_per_swarm": TASKS_PER_SWARM,
        **runs,
        "speedup": {"plan": ratio("plan_s"), "apply": ratio("apply_s"), "total": ratio("total_s")},
        "machine": machine(),
        "redis": f"{Path(server.binary).name} {redis}",
        "command": "python benchmarks/bench_recovery.py"
        + (" --quick" if args.quick else "")
        + (f" --swarms {args.swarms}" if args.swarms else ""),
    }
    print(json.dumps(report, indent=2))
    if not args.no_results:
        update_results(report)


if __name__ == "__main__":
    main()
