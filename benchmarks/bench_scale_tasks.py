"""What one Redis pays on the task side as the deployment grows: a worker leaving while 100,000
tasks run, and a task with 40,000 dependents.

1. Reap: ``--workers`` workers host one swarm each; ``--running`` tasks are submitted, dispatched
   and claimed (so they run, spread evenly over the workers); then one worker is declared dead
   (``reap_workers``). Before the running-by-worker index (decision 40) the script walked every
   running task of the deployment; after, it reads the leaving worker's own.
2. Fan-out: one task, then ``--dependents`` tasks depending on it, submitted as a user would
   (``TaskStore.submit``); then the task completes and the leader dispatches until none is
   pending. Before (decision 41) each dependent rewrote one comma-separated list and the
   completion released every dependent in one script.

Redis time per script call comes from ``SLOWLOG`` at a 0 µs threshold. Run against another
checkout for a before/after table (the script uses only the public API and the ops layer):

    PYTHONPATH=/work/main python benchmarks/bench_scale_tasks.py --no-results --json-out /tmp/b.json
    python benchmarks/bench_scale_tasks.py --baseline /tmp/b.json

Prints one JSON object and updates the ``scale-tasks`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from _results import machine, update_section  # benchmarks/_results.py, shared by the bench scripts
from _slowlog import record, script_times, scripts_usec

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.coordinator import SwarmCoordinator
from multiswarm.keys import Keys
from multiswarm.redis_server import RedisServer
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

HANDLER = "bench.scale:noop"
#: The issue's bound on one script call, in µs.
BOUND_US = 10_000
#: Script calls logged (SLOWLOG) from this long, in µs: logging every command would slow the
#: long scripts of the old code by more than they cost (and trip Redis's busy-script limit).
SLOW_US = 1_000


async def _world(url: str, ns: str) -> tuple[Any, Scripts, Keys, TaskStore]:
    client = connect(Settings(redis_url=url, redis_url_explicit=True, namespace=ns))
    scripts = Scripts(client, reconnect_timeout_s=60)
    keys = Keys(ns)
    return client, scripts, keys, TaskStore(scripts, keys)


async def _leader(scripts: Scripts, keys: Keys) -> SwarmCoordinator:
    # a long lease: setting up 100,000 running tasks takes longer than the default 30 s
    coord = SwarmCoordinator(scripts, keys, lease_ms=3_600_000, batch_size=2_000)
    if not await coord.election.try_acquire():
        raise RuntimeError("no leadership")
    return coord


async def reap(url: str, running: int, workers: int) -> dict[str, Any]:
    """Redis time of one worker's death with ``running`` tasks running over ``workers``."""
    client, scripts, keys, store = await _world(url, "reap")
    registry = SwarmRegistry(scripts, keys)
    per = -(-running // workers)
    for w in range(workers):
        spec = swarm_spec(f"s{w}", [f"c{w}"], capacity=per)
        await registry.host_swarms(f"w{w}", {"host": "bench", "pid": 0}, [spec])
    specs = [(task_spec(HANDLER, capabilities=[f"c{i % workers}"]), i) for i in range(running)]
    await store.submit(specs)
    coord = await _leader(scripts, keys)
    while await coord.dispatch_once():
        pass
    claimed = 0
    for w in range(workers):
        while batch := await store.claim(f"s{w}", f"w{w}", 500):
            claimed += len(batch)
    await client.config_resetstat()
    await registry.reap_workers(60_000, worker_id="w0", graceful=False)
    reap_ms = round(await scripts_usec(client) / 1000, 3)
    await client.aclose()
    return {"running": claimed, "workers": workers, "reap_ms": reap_ms}


async def fan_out(url: str, dependents: int) -> dict[str, Any]:
    """Submit, then release, ``dependents`` tasks that wait on one task."""
    client, scripts, keys, store = await _world(url, "fan")
    await SwarmRegistry(scripts, keys).host_swarms(
        "w1", {"host": "bench", "pid": 0}, [swarm_spec("s", [], capacity=dependents + 1)]
    )
    await store.submit([(task_spec(HANDLER, id="root"), 0)])
    await record(client, True, SLOW_US)
    t0 = time.perf_counter()
    await store.submit(
        [(task_spec(HANDLER, id=f"d{i}", depends_on=["root"]), i) for i in range(dependents)]
    )
    submit_s = time.perf_counter() - t0
    submitted = await script_times(client)
    coord = await _leader(scripts, keys)
    await coord.dispatch_once()
    (root,) = await store.claim("s", "w1", 1)
    await script_times(client)
    t0 = time.perf_counter()
    await store.complete(root.id, root.token, "w1", None)
    while (await store.counts())["pending"]:
        await coord.dispatch_once()
    release_s = time.perf_counter() - t0
    released = await script_times(client)
    await record(client, False)
    await client.aclose()
    slowest = max(released, key=lambda t: t[1], default=("none", 0))
    return {
        "dependents": dependents,
        "submit_s": round(submit_s, 2),
        "submit_slowest_ms": round(max((t for _, t in submitted), default=0) / 1000, 3),
        "release_s": round(release_s, 2),
        "release_slowest": {"script": slowest[0], "ms": round(slowest[1] / 1000, 3)},
    }


def _row(label: str, r: dict[str, Any]) -> str:
    rp, fo = r["reap"], r["fan_out"]
    return (
        f"| {label} | {rp['running']:,} | {rp['reap_ms']} | {fo['dependents']:,} | "
        f"{fo['submit_s']} | {fo['submit_slowest_ms']} | {fo['release_s']} | "
        f"{fo['release_slowest']['script']} {fo['release_slowest']['ms']} |"
    )


def update_results(report: dict[str, Any]) -> None:
    rows = [_row("before", b) for b in report.get("baseline", [])]
    rows += [_row("after", report["run"])]
    update_section(
        "scale-tasks",
        "\n".join(
            [
                "## Scale, task side: a worker leaving under 100,000 running tasks, a task "
                "with 40,000 dependents (`benchmarks/bench_scale_tasks.py`)",
                "",
                f"Machine: {report['machine']}; redis-server {report['redis_server']}; 1-minute "
                f"load average {report['load']} at the end  ",
                f"Command: `{report['command']}`",
                "",
                "Redis time per script call (ms): the reap from `INFO commandstats`, the slowest "
                "calls from SLOWLOG (calls of 1 ms or more; '0.0': none that long). Reap: one of "
                f"{report['run']['reap']['workers']} workers dies while the tasks run, spread "
                "evenly. Fan-out: submitted as a user would (`TaskStore.submit`), then released "
                "by the root's completion and the leader's dispatch calls. The bound is "
                f"{BOUND_US / 1000:g} ms per script call.",
                "",
                "| code | running tasks | reap_workers ms | dependents | submit s | slowest "
                "submit call ms | release s | slowest release call ms |",
                "|---|---:|---:|---:|---:|---:|---:|---|",
                *rows,
            ]
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--running", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--dependents", type=int, default=40_000)
    parser.add_argument("--baseline", help="JSON of a run on other code (its `run` is shown)")
    parser.add_argument("--json-out", help="also write the JSON report here")
    parser.add_argument("--no-results", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    with RedisServer() as server:
        version = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True
        ).stdout.split()
        run = {
            "reap": asyncio.run(reap(server.url, args.running, args.workers)),
            "fan_out": asyncio.run(fan_out(server.url, args.dependents)),
        }
    report: dict[str, Any] = {
        "machine": machine(),
        "redis_server": next((v[2:] for v in version if v.startswith("v=")), "?"),
        "command": "python benchmarks/bench_scale_tasks.py"
        + (" --baseline <main's JSON>" if args.baseline else ""),
        "load": round(os.getloadavg()[0], 1),
        "run": run,
    }
    if args.baseline:
        report["baseline"] = [json.loads(Path(args.baseline).read_text())["run"]]
    print(json.dumps(report, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report))
    if not args.no_results:
        update_results(report)


if __name__ == "__main__":
    main()
