"""Benchmark the Numba kernels against their plain-Python references.

Scheduling: a batch of tasks (default 10,000) onto agents (default 256) with each strategy, the
kernel and the reference on the same inputs in the same run (results checked equal), compile
time excluded by a warm-up call. Also a batch as large as the agent count, the scale of the
original design's target (sub-millisecond scheduling for 256 agents).

Memory: allocations and frees per second on the default pool (28 MiB in 64 KiB regions), with
the kernel-backed ``RegionPool`` and the same class on the reference kernels, once with room to
spare and once full (every allocation evicts, LRU).

Prints one JSON object and rewrites the ``kernels`` section of ``benchmarks/RESULTS.md``
(between ``<!-- kernels:begin -->`` and ``<!-- kernels:end -->``; other sections are kept).
A ``--quick`` run is a smoke test and leaves RESULTS.md alone unless ``--write`` is given.

Usage: ``python benchmarks/bench_kernels.py [--quick] [--write | --no-write]``
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _results import (  # benchmarks/_results.py, shared by the bench scripts
    cpu_model,
    update_section,
)

from multiswarm.kernels import constants as c
from multiswarm.kernels.memory import RegionPool
from multiswarm.kernels.scheduling import deps_to_csr, schedule

TARGET_MS = 1.0  # the original design's target for one scheduling batch on 256 agents


def make_batch(n_tasks: int, n_agents: int, seed: int) -> dict[str, Any]:
    """Tasks needing 0-2 of 8 capability bits, 20% with 1-2 earlier dependencies; agents with
    random capabilities, 90% healthy, loads well under capacity (so most tasks place)."""
    rng = np.random.default_rng(seed)
    bits = np.uint64(1) << rng.integers(0, 8, (n_tasks, 2)).astype(np.uint64)
    use = rng.random((n_tasks, 2)) < [0.6, 0.3]
    task_caps = np.where(use[:, 0], bits[:, 0], 0) | np.where(use[:, 1], bits[:, 1], 0)
    deps = [
        rng.integers(0, i, int(rng.integers(1, 3))).tolist() if i and rng.random() < 0.2 else []
        for i in range(n_tasks)
    ]
    indptr, indices = deps_to_csr(deps)
    return {
        "priority": rng.integers(0, 10, n_tasks),
        "task_caps": task_caps.astype(np.uint64),
        "task_cost": rng.uniform(0.1, 1.0, n_tasks),
        "agent_load": rng.uniform(0.0, 20.0, n_agents),
        "agent_capacity": rng.uniform(50.0, 150.0, n_agents),
        "agent_caps": rng.integers(0, 256, n_agents).astype(np.uint64),
        "agent_health": rng.choice([0, 1, 2, 3], n_agents, p=[0.9, 0.05, 0.03, 0.02]).astype(
            np.int8
        ),
        "dep_indptr": indptr,
        "dep_indices": indices,
    }


def time_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` in milliseconds over ``repeat`` calls."""
    return statistics.median(samples_ms(fn, repeat))


def samples_ms(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall times of ``repeat`` calls of ``fn``, in milliseconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def bench_schedule(n_tasks: int, n_agents: int, repeat: int, ref_repeat: int) -> dict[str, Any]:
    batch = make_batch(n_tasks, n_agents, seed=n_tasks)
    out: dict[str, Any] = {"tasks": n_tasks, "agents": n_agents, "strategies": {}}
    for name in c.STRATEGIES:
        args = {**batch, "strategy": name}
        kernel: Any = schedule(**args)  # warm-up: compile, or load from the cache
        reference: Any = schedule(**args, backend="python")
        for got, want in zip(kernel, reference, strict=True):
            assert np.array_equal(got, want), f"{name}: kernel and reference disagree"
        # the minimum too: on a shared machine the median carries other processes' load
        kernel_samples = samples_ms(functools.partial(schedule, **args), repeat)
        kernel_ms = statistics.median(kernel_samples)
        ref_ms = time_ms(functools.partial(schedule, **args, backend="python"), ref_repeat)
        out["strategies"][name] = {
            "kernel_ms": round(kernel_ms, 4),
            "kernel_min_ms": round(min(kernel_samples), 4),
            "kernel_us_per_task": round(kernel_ms * 1e3 / n_tasks, 4),
            "reference_ms": round(ref_ms, 2),
            "speedup": round(ref_ms / kernel_ms, 1),
            "placed": int((kernel.assignment >= 0).sum()),
        }
    worst = max(s["kernel_ms"] for s in out["strategies"].values())
    out["worst_kernel_ms"] = worst
    out["sub_ms_target_met"] = worst < TARGET_MS
    return out


def bench_pool(backend: str, n_ops: int, full: bool, seed: int = 0) -> float:
    """Allocation + free pairs per second on the default pool; ``full`` keeps it full (LRU)."""
    rng = np.random.default_rng(seed)
    clock = iter(range(10**9)).__next__
    pool = RegionPool(clock=lambda: float(clock()), backend=backend)  # type: ignore[arg-type]
    region = pool.region_bytes
    sizes = (rng.integers(1, 5, n_ops) * region - rng.integers(0, region, n_ops)).tolist()
    agents = rng.integers(0, 64, n_ops).tolist()
    live = []
    # Fill to the working level first: half the pool, or all of it when measuring eviction.
    level = pool.n_regions if full else pool.n_regions // 2
    while sum(a.n_regions for a in pool.allocations()) + 4 <= level:
        live.append(pool.allocate(int(rng.integers(0, 64)), int(rng.integers(1, 4 * region))))
    start = time.perf_counter()
    for size, agent in zip(sizes, agents, strict=True):
        if full:
            pool.allocate(agent, size)  # evicts
            continue
        live.append(pool.allocate(agent, size))
        pool.free(live.pop(int(rng.integers(0, len(live)))))
    elapsed = time.perf_counter() - start
    pool.close()
    return n_ops / elapsed


def machine() -> dict[str, Any]:
    import numba

    cpu = cpu_model()
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numba": numba.__version__,
        "numpy": np.__version__,
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


def render(result: dict[str, Any]) -> str:
    m, big, small = result["machine"], result["schedule"], result["schedule_small"]
    lines = [
        "## Kernels (`benchmarks/bench_kernels.py`)",
        "",
        f"Command: `{result['command']}` ({result['date']}).",
        f"Machine: {m['platform']}, {m['cpu']}, {m['cpu_count']} CPUs; Python {m['python']}, "
        f"Numba {m['numba']}, NumPy {m['numpy']}; 1-minute load average "
        f"{m.get('load_avg_1min', '?')} at the start (a shared machine: medians carry that load, "
        "minimums less so).",
        "",
    ]
    for block in (big, small):
        lines += [
            f"Scheduling {block['tasks']:,} tasks onto {block['agents']} agents (ms per batch, "
            "median; compile time excluded; kernel timed through the validating wrapper):",
            "",
            "| strategy | kernel ms | kernel min ms | µs / task | reference ms | speedup | placed |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, s in block["strategies"].items():
            lines.append(
                f"| {name} | {s['kernel_ms']:.3f} | {s['kernel_min_ms']:.3f} | "
                f"{s['kernel_us_per_task']:.3f} | "
                f"{s['reference_ms']:.1f} | {s['speedup']:,.0f}x | {s['placed']:,} |"
            )
        met = "met" if block["sub_ms_target_met"] else "not met"
        # The design's target names no batch size; both sizes are reported.
        lines += [
            "",
            f"Sub-millisecond target at this size: **{met}** "
            f"(slowest strategy {block['worst_kernel_ms']:.3f} ms).",
            "",
        ]
    lines += [
        "Region pool, default size (28 MiB, 64 KiB regions), 1-4 region requests from 64 agents, "
        "per second:",
        "",
        "| workload | kernel (Numba) | reference (Python) | speedup |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, p in result["pool"].items():
        lines.append(
            f"| {name} | {p['kernel_per_s']:,.0f} | {p['reference_per_s']:,.0f} | "
            f"{p['speedup']:.1f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks and repeats (smoke run)")
    parser.add_argument(
        "--write",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="update the kernels section of RESULTS.md (default: yes, except with --quick)",
    )
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=256)
    args = parser.parse_args(argv)
    tasks = 1_000 if args.quick else args.tasks
    repeat, ref_repeat = (5, 1) if args.quick else (50, 3)
    pool_ops = 500 if args.quick else 20_000
    pool_ops_ref = 100 if args.quick else 2_000

    result: dict[str, Any] = {
        "command": "python benchmarks/bench_kernels.py" + (" --quick" if args.quick else ""),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "schedule": bench_schedule(tasks, args.agents, repeat, ref_repeat),
        "schedule_small": bench_schedule(args.agents, args.agents, repeat * 10, ref_repeat * 3),
        "pool": {},
    }
    workloads = (
        ("allocate + free pairs, pool half full", False),
        ("allocations into a full pool, each evicting (LRU)", True),
    )
    for name, full in workloads:
        bench_pool("numba", 10, full)  # warm-up
        kernel = bench_pool("numba", pool_ops, full)
        ref = bench_pool("python", pool_ops_ref, full)
        result["pool"][name] = {
            "kernel_per_s": round(kernel),
            "reference_per_s": round(ref),
            "speedup": round(kernel / ref, 2),
        }
    print(json.dumps(result, indent=2))
    if args.write or (args.write is None and not args.quick):
        update_section("kernels", render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
