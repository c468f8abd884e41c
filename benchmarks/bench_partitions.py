"""Redis CPU per master of a 3-master Redis Cluster with 1 and with 3 coordination partitions.

One private cluster (``redis-cli --cluster create``, 3 masters, loopback). For each partition
count P, in a fresh namespace: the local system (registry, two coordinators, state manager,
``--workers`` workers hosting ``--swarms`` swarms, as ``multiswarm-cli up`` starts it) runs
``--tasks`` no-op tasks submitted through the facade (``Multiswarm.distribute_task``, which
routes each to a partition, decision 47) by ``--clients`` concurrent submitters. Measured per
master from ``INFO``: script calls (``FCALL``) and CPU seconds (``used_cpu_sys`` +
``used_cpu_user``) over the run; end-to-end tasks/s. The busiest master's share is what the
partitions spread (issue 12: at most 45% with P = 3).

Prints one JSON object and updates the ``partitions`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from _results import machine, update_section  # benchmarks/_results.py, shared by the bench scripts

from multiswarm.api import Multiswarm
from multiswarm.config import from_env
from multiswarm.local_system import start_system
from multiswarm.redis_topologies import RedisClusterGroup


def master_stats(ports: list[int]) -> dict[int, tuple[int, float]]:
    """Per master port: (script calls, CPU seconds) so far."""
    out: dict[int, tuple[int, float]] = {}
    for port in ports:
        client = redis.Redis(port=port)
        try:
            stats = client.info("commandstats")
            cpu = client.info("cpu")
        finally:
            client.close()
        calls = sum(
            int(v["calls"])
            for k, v in stats.items()
            if k in ("cmdstat_fcall", "cmdstat_evalsha", "cmdstat_eval")
        )
        out[port] = (calls, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]))
    return out


async def _ready(ms: Multiswarm, swarms: int, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = await ms.status()
        active = sum(1 for s in await ms.list_swarms() if s.status == "active")
        leader = status.leader
        held = leader is not None and all(p.holder for p in leader.partitions)
        if active >= swarms and held:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the system did not come up")


async def _run_tasks(url: str, namespace: str, partitions: int, args: Any) -> float:
    settings = from_env(redis_url=url, namespace=namespace).replace(partitions=partitions)
    async with await Multiswarm.connect(settings=settings) as ms:
        limit = asyncio.Semaphore(args.clients)

        async def one(i: int) -> str:
            async with limit:
                return await ms.distribute_task("multiswarm.demo_tasks:noop", i)

        started = time.monotonic()
        ids = await asyncio.gather(*(one(i) for i in range(args.tasks)))
        for tid in ids:
            await ms.wait_for(tid, timeout_s=300)
        return time.monotonic() - started


async def _wait_ready(url: str, namespace: str, partitions: int, swarms: int) -> None:
    settings = from_env(redis_url=url, namespace=namespace).replace(partitions=partitions)
    async with await Multiswarm.connect(settings=settings) as ms:
        await _ready(ms, swarms)
        # the roles' start (registrations, elections, library loads) is not measured
        await asyncio.sleep(2.0)


def measure(cluster: RedisClusterGroup, partitions: int, args: Any) -> dict[str, Any]:
    namespace = f"bp{partitions}-{uuid.uuid4().hex[:6]}"
    settings = from_env(redis_url=cluster.url, namespace=namespace).replace(
        partitions=partitions, lease_ms=3000, heartbeat_timeout_ms=6000
    )
    group = start_system(
        settings,
        workers=args.workers,
        swarms=args.swarms,
        agents=args.agents,
        strategy="least_loaded",
        log_dir=None,
    )
    try:
        ports = cluster.master_ports()
        asyncio.run(_wait_ready(cluster.url, namespace, partitions, args.swarms))
        before = master_stats(ports)
        wall = asyncio.run(_run_tasks(cluster.url, namespace, partitions, args))
        after = master_stats(ports)
    finally:
        group.stop_all()
    calls = {p: after[p][0] - before[p][0] for p in ports}
    cpu = {p: round(after[p][1] - before[p][1], 2) for p in ports}
    return {
        "partitions": partitions,
        "tasks_per_second": round(args.tasks / wall, 1),
        "wall_s": round(wall, 2),
        "script_calls": calls,
        "cpu_s": cpu,
        "busiest_calls_share": round(max(calls.values()) / max(1, sum(calls.values())), 3),
        "busiest_cpu_share": round(max(cpu.values()) / max(1e-9, sum(cpu.values())), 3),
    }


def update_results(report: dict[str, Any]) -> None:
    lines = [
        "## Partitions: Redis per master on a 3-master cluster (`benchmarks/bench_partitions.py`)",
        "",
        f"Machine: {report['machine']}; {report['redis']}, 3 masters on loopback; 1-minute load "
        f"average {report['load_avg']} at the end  ",
        f"Command: `{report['command']}`",
        "",
        f"{report['tasks']:,} no-op tasks through the facade ({report['clients']} concurrent "
        f"submitters, each waits for its results), {report['swarms']} swarms on "
        f"{report['workers']} workers, registry, two coordinators and a state manager. Script "
        "calls and CPU seconds per master over the run (INFO); shares are the busiest master's.",
        "",
        "| partitions | tasks/s | script calls per master | busiest calls share | CPU s per "
        "master | busiest CPU share |",
        "|---:|---:|---|---:|---|---:|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['partitions']} | {r['tasks_per_second']:,} | "
            f"{' / '.join(str(v) for v in r['script_calls'].values())} | "
            f"{r['busiest_calls_share']:.0%} | {' / '.join(str(v) for v in r['cpu_s'].values())} "
            f"| {r['busiest_cpu_share']:.0%} |"
        )
    update_section("partitions", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", default="1,3", help="partition counts, comma-separated")
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--swarms", type=int, default=12)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--no-results", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    runs = []
    with RedisClusterGroup(masters=3) as cluster:
        version = subprocess.run(
            [cluster.nodes[0].binary, "--version"], capture_output=True, text=True, check=False
        ).stdout.split()
        redis_version = next((w.split("=", 1)[1] for w in version if w.startswith("v=")), "?")
        for p in (int(x) for x in args.partitions.split(",")):
            runs.append(measure(cluster, p, args))
    report: dict[str, Any] = {
        "benchmark": "partitions",
        "runs": runs,
        "tasks": args.tasks,
        "clients": args.clients,
        "swarms": args.swarms,
        "workers": args.workers,
        "machine": machine(),
        "load_avg": round(os.getloadavg()[0], 1),
        "redis": f"{Path(cluster.nodes[0].binary).name} {redis_version}",
        "command": "python benchmarks/bench_partitions.py",
    }
    print(json.dumps(report, indent=2))
    if not args.no_results:
        update_results(report)


if __name__ == "__main__":
    main()
