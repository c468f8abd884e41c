"""Fixed Redis cost per call of the hot-path task scripts (issue 11, decision 83).

Usage: python3 benchmarks/bench_call_cost.py [--calls N] [--batch B]

In the end-to-end benchmark a dispatch, claim or finish call carries 4 to 9 tasks, so what a
call costs whatever it carries weighs as much as what each task costs. On a private
redis-server, straight through ``TaskStore`` and an elected coordinator (no worker), this
measures ``INFO commandstats`` µs per ``FCALL`` (wall clock inside Redis: noisy on a shared
machine, compare runs made together) and ``redis.call``s per ``FCALL`` of: an idle dispatch
call (nothing to do), a dispatch, a claim and a finish of one task, an idle claim, and the
same three of a batch of B tasks (per task). ``--callgrind`` runs the server under valgrind's
callgrind (as ``bench_script_cost.py --callgrind``) and adds the instructions per call of
``fcallCommand`` (deterministic: a few calls suffice). Prints JSON; writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from multiswarm.connection import Client
from multiswarm.coordinator import SwarmCoordinator
from multiswarm.messages import TaskSpec
from multiswarm.ops.tasks import Outcome
from multiswarm.tasks import task_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_script_cost import Profiler, hosted_swarm, server  # benchmarks/bench_script_cost.py

T = TypeVar("T")
NOOP = "multiswarm.demo_tasks:noop"


class Counts:
    """``INFO commandstats`` differences, summed per measured case."""

    def __init__(self, client: Client, valgrind_pid: int | None, out: Path) -> None:
        self.client = client
        self.by_case: dict[str, Counter[str]] = {}
        # callgrind's dumps per case (bench_script_cost's Profiler, one phase per case)
        self.prof = Profiler(client, valgrind_pid, out)

    async def _stats(self) -> dict[str, tuple[int, int]]:
        info: dict[str, Any] = await self.client.info("commandstats")
        return {k.removeprefix("cmdstat_"): (v["calls"], v["usec"]) for k, v in info.items()}

    async def measure(self, case: str, work: Awaitable[T]) -> T:
        before = await self._stats()
        self.prof._callgrind("-z")
        result = await work
        if self.prof.pid is not None:
            self.prof._callgrind("-d")
            self.prof.dumps.setdefault(case, []).append(self.prof._last_dump())
        got = self.by_case.setdefault(case, Counter())
        for cmd, (calls, usec) in (await self._stats()).items():
            c0, u0 = before.get(cmd, (0, 0))
            if cmd != "info" and calls > c0:
                got[cmd + ":calls"] += calls - c0
                got[cmd + ":usec"] += usec - u0
        return result

    def row(self, case: str, per: int = 1) -> dict[str, float]:
        st = self.by_case[case]
        fcalls = st["fcall:calls"]
        inner = sum(v for k, v in st.items() if k.endswith(":calls") and k != "fcall:calls")
        return {
            "fcalls": fcalls,
            "usec_per_call": round(st["fcall:usec"] / max(1, fcalls), 2),
            "redis_calls_per_call": round(inner / max(1, fcalls), 2),
            **({"usec_per_task": round(st["fcall:usec"] / max(1, per), 2)} if per > 1 else {}),
            **(self._instructions(case, fcalls, per) if self.prof.pid is not None else {}),
        }

    def _instructions(self, case: str, fcalls: int, per: int) -> dict[str, float]:
        total = self.prof.instructions(case) / 1000
        out = {"k_instructions_per_call": round(total / max(1, fcalls), 1)}
        if per > 1:
            out["k_instructions_per_task"] = round(total / per, 1)
        return out


async def run(url: str, pid: int | None, out: Path, calls: int, batch: int) -> dict[str, Any]:
    client, scripts, keys, store = await hosted_swarm(url, "callcost", capacity=batch + 10)
    coord = SwarmCoordinator(scripts, keys, lease_ms=3_600_000, batch_size=batch)
    assert await coord.election.try_acquire()
    counts = Counts(client, pid, out)
    seq = 0

    def specs(n: int) -> list[tuple[TaskSpec, None]]:
        nonlocal seq
        out = [(task_spec(NOOP, id=f"t{seq + i:07d}"), None) for i in range(n)]
        seq += n
        return out

    async def lifecycle(n: int, suffix: str) -> None:
        await store.submit(specs(n))
        assigned = 0
        while assigned < n:  # (under callgrind a call may stop at its time budget)
            got_now, _, _ = await counts.measure("dispatch" + suffix, coord._dispatch_call(n))
            assigned += got_now
        got = await counts.measure("claim" + suffix, store.claim("a", "w1", n))
        assert len(got) == n
        done = [Outcome(c.id, c.token, "ok", b"\xc0") for c in got]
        replies = await counts.measure("finish" + suffix, store.finish("w1", done))
        assert replies == ["completed"] * n, replies

    for _ in range(calls):
        await counts.measure("dispatch_idle", coord._dispatch_call(batch))
        await counts.measure("claim_idle", store.claim("a", "w1", 1))
        await lifecycle(1, "_1")
        await lifecycle(batch, "_batch")
    await client.aclose()
    rows: dict[str, dict[str, float]] = {}
    for case in ("dispatch_idle", "claim_idle", "dispatch_1", "claim_1", "finish_1"):
        rows[case] = counts.row(case)
    for case in ("dispatch_batch", "claim_batch", "finish_batch"):
        rows[case] = counts.row(case, per=batch * calls)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls of each case")
    parser.add_argument("--batch", type=int, default=8, help="tasks per batched call")
    parser.add_argument("--callgrind", action="store_true", help="count instructions too")
    parser.add_argument("--keep-dumps", metavar="DIR", help="keep callgrind's dumps in DIR")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep_dumps or tmp) / "callgrind.out"
        out.parent.mkdir(parents=True, exist_ok=True)
        with server(args.callgrind, out) as (url, pid):
            rows = asyncio.run(run(url, pid, out, args.calls, args.batch))
    print(json.dumps({"calls": args.calls, "batch": args.batch, "cases": rows}, indent=1))


if __name__ == "__main__":
    main()
