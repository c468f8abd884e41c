"""Idle cost: what a deployment with nothing to do costs Redis and the machine.

Usage: python3 benchmarks/bench_idle.py [--seconds S] [--shapes 1x1,2x6,2x12] [--no-write]

For each shape WxS (W workers hosting S swarms of 2 agents, plus the registry, two coordinators
and the state manager, as ``multiswarm-cli up`` starts them) on a private redis-server: wait
until every swarm is active and a leader holds the lease, reset Redis's command statistics,
stay idle for S seconds, then read ``INFO commandstats`` (commands/s, the busiest commands),
Redis's own CPU time (``INFO cpu``), the CPU time of every role process and its children
(agents) from ``/proc``, and their resident memory. Idle commands should grow with processes,
not with swarms: the shapes show which. Prints one JSON object; writes the table to RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proc_cpu
from _results import machine, update_section

from multiswarm.config import from_env
from multiswarm.connection import connect
from multiswarm.keys import Keys
from multiswarm.local_system import start_system
from multiswarm.redis_server import RedisServer
from multiswarm.script_library import library

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (agents are children of their worker)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):  # the task ended meanwhile
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def script_calls(port: int, seconds: float) -> dict[str, float]:
    """FCALL calls per script name over ``seconds``, from a MONITOR sample (redis-cli)."""
    prefix = library()[0] + "_"
    proc = subprocess.Popen(
        ["redis-cli", "-p", str(port), "monitor"], stdout=subprocess.PIPE, text=True
    )
    time.sleep(seconds)
    proc.terminate()
    out, _ = proc.communicate()
    counts: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split('"')
        if len(parts) > 3 and parts[1].lower() == "fcall":
            name = parts[3].removeprefix(prefix)
            counts[name] = counts.get(name, 0) + 1
        elif len(parts) > 1 and parts[1].lower() != "monitor" and "lua]" not in line:
            # plain commands sent by a client (those run inside a script say "lua]")
            counts[parts[1].lower()] = counts.get(parts[1].lower(), 0) + 1
    return {k: round(v / seconds, 2) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}


def cpu_s(pids: list[int]) -> float:
    """User + system CPU of ``pids`` still running, seconds."""
    total = 0.0
    for p in pids:
        with contextlib.suppress(OSError):
            total += proc_cpu.cpu_s(p)
    return total


def rss_mib(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total / 2**20


async def ready(url: str, namespace: str, swarms: int, timeout_s: float = 180.0) -> None:
    client = connect(from_env(redis_url=url))
    keys = Keys(namespace)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            active = await client.scard(keys.swarm_status("active"))
            if active >= swarms and await client.exists(keys.leader):
                return
            await asyncio.sleep(0.5)
        raise SystemExit(f"system {namespace} did not come up in {timeout_s} s")
    finally:
        await client.aclose()


async def redis_stats(url: str) -> tuple[dict[str, int], float]:
    client = connect(from_env(redis_url=url))
    try:
        stats = await client.info("commandstats")
        cpu = await client.info("cpu")
    finally:
        await client.aclose()
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    return calls, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


async def reset(url: str) -> None:
    client = connect(from_env(redis_url=url))
    try:
        await client.config_resetstat()
    finally:
        await client.aclose()


def measure(server: RedisServer, workers: int, swarms: int, seconds: float) -> dict[str, Any]:
    namespace = f"idle{workers}x{swarms}"
    settings = from_env(redis_url=server.url, namespace=namespace)
    with tempfile.TemporaryDirectory(prefix="multiswarm-idle-") as logs:
        group = start_system(
            settings,
            workers=workers,
            swarms=swarms,
            agents=2,
            strategy="capability",
            log_dir=Path(logs),
        )
        try:
            asyncio.run(ready(server.url, namespace, swarms))
            time.sleep(2.0)  # let start-up traffic (registration, first snapshots) pass
            pids = {c.name: tree(c.pid) for c in group.children}
            asyncio.run(reset(server.url))
            _, redis_cpu0 = asyncio.run(redis_stats(server.url))
            cpu0 = {n: cpu_s(p) for n, p in pids.items()}
            time.sleep(seconds)
            calls, redis_cpu1 = asyncio.run(redis_stats(server.url))
            cpu1 = {n: cpu_s(p) for n, p in pids.items()}
            rss = {n: round(rss_mib(p), 1) for n, p in pids.items()}
            calls_per_s = script_calls(server.port, min(seconds, 10.0))
        finally:
            group.stop_all()
    calls.pop("config|resetstat", None)
    calls.pop("info", None)
    total = sum(calls.values())
    roles_cpu = sum(cpu1[n] - cpu0[n] for n in cpu0)
    worker_rss = [v for n, v in rss.items() if n.startswith("worker")]
    return {
        "shape": f"{workers}x{swarms}",
        "processes": len(pids),
        "agents": sum(len(p) - 1 for n, p in pids.items() if n.startswith("worker")),
        "commands_per_s": round(total / seconds, 1),
        "top_commands": dict(sorted(calls.items(), key=lambda kv: -kv[1])[:6]),
        "redis_cpu_pct": round(100 * (redis_cpu1 - redis_cpu0) / seconds, 2),
        "roles_cpu_pct": round(100 * roles_cpu / seconds, 2),
        "client_calls_per_s": calls_per_s,
        "rss_mib": rss,
        "worker_rss_mib_mean": round(sum(worker_rss) / len(worker_rss), 1),
    }


def render(rows: list[dict[str, Any]], seconds: float) -> str:
    lines = [
        "## Idle cost",
        "",
        f"`python3 benchmarks/bench_idle.py --seconds {seconds:g}` on {machine()}: registry, two "
        "coordinators, state manager and W workers hosting S swarms of 2 agents, idle.",
        "",
        "| W x S | processes (+children) | commands/s (in scripts too) | Redis CPU % | roles "
        "CPU % | worker RSS MiB (with agents) | client calls/s, busiest |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        top = ", ".join(f"{k} {v}" for k, v in list(r["client_calls_per_s"].items())[:5])
        lines.append(
            f"| {r['shape']} | {r['processes']} (+{r['agents']}) | {r['commands_per_s']} | "
            f"{r['redis_cpu_pct']} | {r['roles_cpu_pct']} | {r['worker_rss_mib_mean']} | {top} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--shapes", default="1x1,2x6,2x12", help="WxS,... (workers x swarms)")
    parser.add_argument("--no-write", action="store_true", help="Do not update RESULTS.md.")
    args = parser.parse_args()
    shapes = [tuple(int(n) for n in s.split("x")) for s in args.shapes.split(",")]
    rows = []
    with RedisServer() as server:
        for workers, swarms in shapes:
            rows.append(measure(server, workers, swarms, args.seconds))
            print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"seconds": args.seconds, "shapes": rows}, indent=2))
    if not args.no_write:
        update_section("idle", render(rows, args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
