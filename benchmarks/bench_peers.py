"""multiswarm against the task systems users would pick instead, on one Redis, in one run.

Usage: python3 benchmarks/bench_peers.py [--quick] [--tasks N] [--passes P] [--systems a,b]
       [--round-trips R] [--no-write]

One private redis-server serves every system; systems alternate (pass 1 in order, pass 2
reversed, ...) and the server is flushed between them. One driver (this process) submits and
waits. 2 processes run handlers for every system: multiswarm (registry + coordinator + one worker
hosting one swarm of 2 agents x 8 tasks at once), Dramatiq (2 processes x 8 threads, results stored), SAQ (2
processes), Celery (solo pool, 2 processes), RQ (SimpleWorker, 2 processes). Every handler counts
its run in Redis (benchmarks/peer_tasks.py), so a task run twice shows in the final count.

Per system and pass:

- drain: N tasks submitted first, then the workers started: N / (N-th run - worker spawn);
- end to end, workers running: N / (N-th run - first submit); Redis CPU per task from
  ``used_cpu_sys + used_cpu_user`` (and, for multiswarm, ``INFO commandstats``) over that window,
  and the CPU per task of every process: the system's (benchmarks/proc_cpu.py), Redis's and
  this driver's;
- round trip: sequential single tasks, each submitted and waited for through the library's own
  API, after 5 warm-up ones; p50/p90 by nearest rank.

Times come from the Redis server clock (the handler stamps the first and N-th run), so start and
end share a clock. Prints one JSON object; writes the "peers" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import datetime
import importlib.metadata
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import machine, update_section
from peer_report import commandstats_report, cpu_seconds, markdown
from peer_systems import CLASSES, System
from peer_tasks import URL_ENV, phase_keys
from proc_cpu import marked, per_task, snapshot

import multiswarm
from multiswarm.redis_server import RedisServer

SYSTEMS = tuple(CLASSES)
#: Environment mark of every process this run starts (grandchildren inherit it): the leftover check.
RUN_MARK = "BENCH_PEERS_RUN"
#: Round trips run and discarded before the measured ones.
WARMUP = 5


async def server_time(r: aioredis.Redis) -> float:
    sec, usec = await r.time()
    return float(sec) + float(usec) / 1e6


async def wait_done(
    r: aioredis.Redis, system: System, counter: str, timeout_s: float
) -> tuple[float, float]:
    """Server times of the first and the target-th handler run; bounded by ``timeout_s``."""
    done_key = phase_keys(counter)[2]
    target = int(await r.get(phase_keys(counter)[1]) or 0)
    stamps: dict[int, float] = {}
    deadline = time.monotonic() + timeout_s
    while target not in stamps:
        system.check()
        if time.monotonic() > deadline:
            count = int(await r.get(phase_keys(counter)[0]) or 0)
            raise TimeoutError(f"{counter}: {count} of {target} runs after {timeout_s:.0f} s")
        popped = await r.blpop([done_key], timeout=1)
        if popped:
            n, sec, usec = popped[1].split()
            stamps[int(n)] = int(sec) + int(usec) / 1e6
    return stamps.get(1, stamps[target]), stamps[target]


async def redis_snapshot(r: aioredis.Redis) -> dict[str, Any]:
    return {"cpu": await r.info("cpu"), "commandstats": await r.info("commandstats")}


async def recorded(system: System, handles: list[Any], timeout_s: float = 10.0) -> int:
    """Tasks recorded as completed, given the last one's record a moment to land after its run."""
    deadline = time.monotonic() + timeout_s
    while (done := await system.recorded(handles)) < len(handles) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return done


def nearest_rank(samples: list[float], q: float) -> float | None:
    """The q-quantile by nearest rank, in milliseconds (None without samples)."""
    if not samples:
        return None
    ordered = sorted(samples)
    return round(1e3 * ordered[max(0, math.ceil(q * len(ordered)) - 1)], 2)


async def run_system(
    name: str, pass_no: int, n: int, round_trips: int, timeout_s: float, url: str, log_dir: Path
) -> dict[str, Any]:
    """Drain, end to end and round trip of one system; its processes stopped before returning."""
    tag = f"{pass_no}{uuid.uuid4().hex[:6]}"
    system = CLASSES[name](url, tag, log_dir)
    r = aioredis.Redis.from_url(url)
    # other processes on the machine slow every system; the load says how much there was
    out: dict[str, Any] = {"pass": pass_no, "load_avg_1min": [os.getloadavg()[0]]}
    expected: dict[str, tuple[str, int]] = {}

    async def start_phase(phase: str, count: int) -> str:
        counter = f"{name}:{tag}:{phase}"
        expected[phase] = (counter, count)
        await r.set(phase_keys(counter)[1], count)
        return counter

    try:
        await system.setup()
        counter = await start_phase("drain", n)
        handles = await system.submit(counter, n)
        t0 = await server_time(r)
        await system.start_workers()
        first, last = await wait_done(r, system, counter, timeout_s)
        out["drain"] = {
            "tasks_per_s": round(n / (last - t0), 1),
            "seconds": round(last - t0, 3),
            "first_run_after_s": round(first - t0, 3),
            "recorded": await recorded(system, handles),
        }

        counter = await start_phase("end_to_end", n)
        mark = run_mark(os.environ[RUN_MARK])
        procs, driver = snapshot(marked(mark)), time.process_time()
        before = await redis_snapshot(r)
        t0 = await server_time(r)
        handles = await system.submit(counter, n)
        first, last = await wait_done(r, system, counter, timeout_s)
        after = await redis_snapshot(r)
        driver = time.process_time() - driver
        procs_cpu = per_task(procs, snapshot(marked(mark)), n)
        out["end_to_end"] = {
            "tasks_per_s": round(n / (last - t0), 1),
            "seconds": round(last - t0, 3),
            "redis_cpu_usec_per_task": round(
                1e6 * (cpu_seconds(after["cpu"]) - cpu_seconds(before["cpu"])) / n, 1
            ),
            "recorded": await recorded(system, handles),
        }
        redis_us = out["end_to_end"]["redis_cpu_usec_per_task"]
        # every process's CPU in the window: the system's, Redis's and the driver's
        out["end_to_end"]["cpu_usec_per_task_all"] = round(
            procs_cpu["total"] + redis_us + 1e6 * driver / n, 1
        )
        out["end_to_end"]["cpu_by_process"] = {**procs_cpu, "driver": round(1e6 * driver / n, 1)}
        if name == "multiswarm":
            out["end_to_end"]["commandstats"] = commandstats_report(
                before["commandstats"], after["commandstats"], n
            )

        counter = await start_phase("round_trip", WARMUP + round_trips)
        samples: list[float] = []
        failed: list[str] = []
        deadline, submitted = time.monotonic() + timeout_s, 0
        for i in range(WARMUP + round_trips):
            system.check()
            if time.monotonic() > deadline:
                failed.append(f"{WARMUP + round_trips - i} not run: phase over {timeout_s:.0f} s")
                break
            start = time.perf_counter()
            submitted += 1
            try:  # a lost or late task is reported, the next one still measured
                await system.round_trip(counter)
            except Exception as e:
                failed.append(f"{type(e).__name__}: {e}"[:200])
                continue
            if i >= WARMUP:
                samples.append(time.perf_counter() - start)
        expected["round_trip"] = (counter, submitted)
        out["round_trip"] = {
            "p50_ms": nearest_rank(samples, 0.5),
            "p90_ms": nearest_rank(samples, 0.9),
            "samples": len(samples),
            "failed": failed,
            "api": system.rtt_api,
        }
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        await system.close()
        # counted once every worker has stopped: a late second run of a task shows too
        for phase, (counter, count) in expected.items():
            runs = int(await r.get(phase_keys(counter)[0]) or 0)
            out.setdefault(phase, {}).update(
                {"count": runs, "expected": count, "exact": runs == count}
            )
        await r.flushall()
        await r.aclose()
        out["load_avg_1min"].append(os.getloadavg()[0])
    return out


def run_mark(run_id: str) -> bytes:
    """The environment entry every process of run ``run_id`` carries."""
    return f"{RUN_MARK}={run_id}".encode()


def leftovers(run_id: str, grace_s: float = 3.0) -> int:
    """Kill (by pid) any process still carrying this run's mark after ``grace_s`` seconds;
    returns how many there were. The grace covers a helper process that exits on its own once
    its parent has: multiprocessing's resource tracker reads its closed pipe a moment after the
    worker exits (seen once as a leftover); a process still there after it was left behind."""
    mark = run_mark(run_id)
    deadline = time.monotonic() + grace_s
    while (found := marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(found)


def versions() -> dict[str, str]:
    out = {}
    for dist in ("multiswarm", "dramatiq", "saq", "celery", "rq", "redis"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 tasks, 50 round trips")
    parser.add_argument("--tasks", type=int, default=None, help="N per phase [3000; quick 300]")
    parser.add_argument("--round-trips", type=int, default=None, help="[200; quick 50]")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated subset of {','.join(SYSTEMS)}",
    )
    parser.add_argument(
        "--phase-timeout-s",
        type=float,
        default=None,
        help="longest wait for one drain or end-to-end phase [120 + N/20]",
    )
    parser.add_argument("--max-s", type=int, default=3600, help="bound of the whole run")
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the discarded 20-task run of each system before pass 1",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    args.tasks = args.tasks or (300 if args.quick else 3000)
    args.round_trips = args.round_trips or (50 if args.quick else 200)
    args.phase_timeout_s = args.phase_timeout_s or 120 + args.tasks / 20
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown or not args.systems:
        parser.error(f"--systems: unknown {sorted(unknown)}; choose from {SYSTEMS}")
    return args


def _raise(signum: int, frame: object) -> None:
    raise TimeoutError("run bound reached") if signum == signal.SIGALRM else SystemExit(1)


def compile_sources() -> None:
    """Write the bytecode of multiswarm and of the handlers' module, as an install does.

    pip compiles a package it installs (the peers run from site-packages, compiled); a source
    checkout run with ``PYTHONDONTWRITEBYTECODE=1`` is never compiled, and then every process
    the run starts compiles multiswarm's modules again: ~70-90 ms of CPU on each worker's
    start, inside the drain phase (decision 85). Python reads the files whatever that
    variable says; it only stops Python writing them.
    """
    for package in (Path(multiswarm.__file__).parent, HERE):
        compileall.compile_dir(package, quiet=1, maxlevels=0 if package == HERE else 10)


def main() -> int:
    args = parse_args()
    compile_sources()
    run_id = uuid.uuid4().hex
    log_dir = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    signal.signal(signal.SIGALRM, _raise)
    signal.signal(signal.SIGTERM, _raise)
    signal.alarm(args.max_s)
    result: dict[str, Any] = {}
    try:
        with RedisServer() as server:
            os.environ.update(
                {
                    URL_ENV: server.url,
                    RUN_MARK: run_id,
                    "PYTHONPATH": os.pathsep.join(
                        [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
                    ),
                }
            )
            with redis.Redis.from_url(server.url) as r:
                redis_version = str(r.info("server")["redis_version"])
            result = {
                "machine": machine(),
                "redis_server": redis_version,
                "command": "python3 benchmarks/bench_peers.py " + " ".join(sys.argv[1:]),
                "date": datetime.date.today().isoformat(),
                "versions": versions(),
                "tasks": args.tasks,
                "round_trips": args.round_trips,
                "passes": args.passes,
                "orders": [],
                "warmup": {},
                "systems": {s: {"passes": []} for s in args.systems},
            }
            if not args.no_warmup:  # caches (Numba, bytecode, files) warm for every system
                for name in args.systems:
                    print(f"warm-up: {name}", file=sys.stderr, flush=True)
                    result["warmup"][name] = asyncio.run(
                        run_system(name, 0, 20, 1, args.phase_timeout_s, server.url, log_dir)
                    )
            for p in range(1, args.passes + 1):
                order = args.systems if p % 2 else args.systems[::-1]
                result["orders"].append(order)
                for name in order:
                    print(f"pass {p}: {name}", file=sys.stderr, flush=True)
                    result["systems"][name]["passes"].append(
                        asyncio.run(
                            run_system(
                                name,
                                p,
                                args.tasks,
                                args.round_trips,
                                args.phase_timeout_s,
                                server.url,
                                log_dir,
                            )
                        )
                    )
    finally:
        signal.alarm(0)
        result["leftover_processes"] = leftovers(run_id)
    print(json.dumps(result, indent=2))
    errors = [s for s, v in result["systems"].items() for p in v["passes"] if "error" in p]
    if errors:
        print(f"errors in {errors}; worker logs kept in {log_dir}", file=sys.stderr)
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    if not args.no_write:  # errors show in the table
        update_section("peers", markdown(result))
    return 1 if errors or result["leftover_processes"] else 0


if __name__ == "__main__":
    for var in ("MULTISWARM_REDIS_URL", "MULTISWARM_NAMESPACE"):
        os.environ.pop(var, None)
    sys.exit(main())
