"""End-to-end throughput: the demo, and a no-op workload against RQ on the same Redis.

Usage: python3 benchmarks/bench_throughput.py [--quick] [--tasks N]

Both systems run against one private redis-server started here. multiswarm: a registry, a
coordinator and one worker hosting one swarm of 2 agents (2 processes run handlers, like the 2
RQ workers); time from the first submit to the last completion recorded. RQ: 2 `rq worker --burst`
processes (default Worker: a fork per job, the isolation multiswarm's agent processes give) and
the same with SimpleWorker (no fork). Prints one JSON object; writes the table to RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, update_section

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.redis_server import RedisServer
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

HERE = Path(__file__).resolve().parent


async def multiswarm_noop(url: str, n: int) -> dict[str, float]:
    settings = Settings(redis_url=url, redis_url_explicit=True, namespace="benchnoop")
    group = ProcessGroup(settings, Path(tempfile.mkdtemp(prefix="bench-")))
    group.spawn("registry", ["registry"])
    group.spawn("coordinator", ["coordinator", "--id", "c1"])
    group.spawn("worker", ["worker", "--id", "w1", "--swarm", "s:noop:2"])
    client = connect(settings)
    store = TaskStore(Scripts(client), Keys(settings.namespace))
    try:
        while not await client.get(Keys(settings.namespace).leader) or not await client.hlen(
            Keys(settings.namespace).workers
        ):
            await asyncio.sleep(0.05)
        tasks = [
            (task_spec("multiswarm.demo_tasks:noop", id=f"n{i}", capabilities=["noop"]), i)
            for i in range(n)
        ]
        start = time.perf_counter()
        await store.submit(tasks)
        while (await store.counts())["completed"] < n:
            await asyncio.sleep(0.01)
        wall = time.perf_counter() - start
        return {"tasks": n, "seconds": round(wall, 3), "tasks_per_second": round(n / wall, 1)}
    finally:
        await client.aclose()
        group.stop_all()


def rq_noop(url: str, n: int, worker_class: str) -> dict[str, float]:
    from redis import Redis
    from rq import Queue

    conn = Redis.from_url(url)
    queue = Queue(f"bench-{worker_class.rsplit('.', 1)[-1]}", connection=conn)
    import rq_jobs

    start = time.perf_counter()
    with conn.pipeline() as pipe:
        for i in range(n):
            queue.enqueue(rq_jobs.noop, i, pipeline=pipe)
        pipe.execute()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rq.cli",
                "worker",
                "--burst",
                "--url",
                url,
                "--worker-class",
                worker_class,
                "-q",
                queue.name,
            ],
            cwd=HERE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    for w in workers:
        w.wait()
    wall = time.perf_counter() - start
    done = queue.finished_job_registry.count
    return {
        "tasks": n,
        "completed": done,
        "seconds": round(wall, 3),
        "tasks_per_second": round(done / wall, 1),
    }


def demo(url: str, quick: bool) -> dict[str, object]:
    cmd = [
        sys.executable,
        "-m",
        "multiswarm.cli",
        "--redis-url",
        url,
        "demo",
        "--json",
        "--kill-leader",
        "--kill-worker",
    ]
    if quick:
        import sysconfig

        cmd += ["--corpus", str(Path(sysconfig.get_paths()["stdlib"]) / "email")]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
    report = json.loads(out.stdout)
    return {
        k: report[k]
        for k in (
            "files",
            "tasks_completed",
            "tasks_lost",
            "duplicate_completions",
            "executions",
            "failovers",
            "failover_seconds",
            "wall_seconds",
            "tasks_per_second",
            "reference_seconds",
            "verified",
        )
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small corpus, fewer tasks")
    parser.add_argument("--tasks", type=int, default=None, help="no-op tasks [2000; quick 300]")
    args = parser.parse_args()
    n = args.tasks or (300 if args.quick else 2000)
    with RedisServer() as server:
        result: dict[str, Any] = {
            "machine": machine(),
            "command": "python3 benchmarks/bench_throughput.py"
            + (" --quick" if args.quick else ""),
            "demo": demo(server.url, args.quick),
            "noop_multiswarm": asyncio.run(multiswarm_noop(server.url, n)),
            "noop_rq_fork": rq_noop(server.url, n, "rq.Worker"),
            "noop_rq_simple": rq_noop(server.url, n, "rq.SimpleWorker"),
        }
    ms = result["noop_multiswarm"]["tasks_per_second"]
    result["ratio_vs_rq_fork"] = round(ms / result["noop_rq_fork"]["tasks_per_second"], 2)
    result["ratio_vs_rq_simple"] = round(ms / result["noop_rq_simple"]["tasks_per_second"], 2)
    print(json.dumps(result, indent=2))
    d = result["demo"]
    update_section(
        "throughput",
        "\n".join(
            [
                "## End-to-end throughput",
                "",
                f"Machine: {result['machine']}  ",
                f"Command: `{result['command']}`",
                "",
                "| workload | tasks | seconds | tasks/s | ratio (multiswarm / baseline) |",
                "|---|---|---|---|---|",
                f"| demo, {d['files']} files, `--kill-leader --kill-worker` (verified: {d['verified']}, "
                f"{d['failovers']} fail-over in {d['failover_seconds']} s) | {d['tasks_completed']} | "
                f"{d['wall_seconds']} | {d['tasks_per_second']} | single-process reference: "
                f"{d['reference_seconds']} s |",
                f"| no-op, multiswarm (1 swarm, 2 agent processes) | {n} | "
                f"{result['noop_multiswarm']['seconds']} | {ms} | |",
                f"| no-op, RQ 2 workers (fork per job) | {n} | {result['noop_rq_fork']['seconds']} | "
                f"{result['noop_rq_fork']['tasks_per_second']} | {result['ratio_vs_rq_fork']} |",
                f"| no-op, RQ 2 SimpleWorkers (no fork) | {n} | {result['noop_rq_simple']['seconds']} | "
                f"{result['noop_rq_simple']['tasks_per_second']} | {result['ratio_vs_rq_simple']} |",
                "",
                "No-op tasks measure the coordination overhead per task: submit, leader dispatch, "
                "claim with lease, run in an agent process, exactly-once completion record.",
            ]
        ),
    )


if __name__ == "__main__":
    os.environ.pop("MULTISWARM_REDIS_URL", None)
    main()
