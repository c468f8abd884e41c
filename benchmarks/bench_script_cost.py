"""Redis work per task of the task lifecycle scripts (issue 11, decision 53).

Usage: python3 benchmarks/bench_script_cost.py [--tasks N] [--deps] [--callgrind]

Runs N no-op tasks through the four lifecycle scripts on a private redis-server, phase by phase
(all submitted 50 per call, then dispatched 8 per call, claimed 8 per call, finished 8 per
call), straight through ``TaskStore`` and an elected coordinator: no worker, no handler, only
the scripts. ``--deps``: 9 of every 10 tasks depend on the 10th. Prints, per phase, the FCALLs
made, Redis time in µs per task inside them (``INFO commandstats``: wall-clock inside Redis,
noisy on a shared machine, so take the least of a few runs) and the ``redis.call``s per task.
``--single``: one task per call of each script (the fixed cost of a single-task round trip).
``--floor`` then runs the same phases, at the same batch sizes, through ``floor_protocol.lua``
on the same server: a floor that keeps nothing per task but a state string and a record no
script decodes (decision 90), to say how much of the cost is the protocol's bookkeeping.
``--callgrind`` runs the server under valgrind's callgrind and adds the instructions per task
of ``fcallCommand`` (deterministic, about 50 times slower: keep N at 1,000 or less); it needs
``valgrind`` and ``callgrind_annotate`` on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import redis
import redis.exceptions

from multiswarm.config import Settings
from multiswarm.connection import Client, connect
from multiswarm.coordinator import SwarmCoordinator
from multiswarm.keys import Keys
from multiswarm.ops.tasks import Claimed, Outcome
from multiswarm.redis_server import RedisServer, free_port
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, update_section  # benchmarks/_results.py

T = TypeVar("T")
NOOP = "multiswarm.demo_tasks:noop"
PHASES = ("submit", "dispatch", "claim", "finish")


class Profiler:
    """Per-phase counts from ``INFO commandstats`` and, under callgrind, instruction counts."""

    def __init__(self, client: Client, valgrind_pid: int | None, out: Path) -> None:
        self.client, self.pid, self.out = client, valgrind_pid, out
        self.stats: dict[str, Counter[str]] = {p: Counter() for p in PHASES}
        self.dumps: dict[str, list[Path]] = {p: [] for p in PHASES}

    async def _commandstats(self) -> dict[str, tuple[int, int]]:
        info: dict[str, Any] = await self.client.info("commandstats")
        return {k.removeprefix("cmdstat_"): (v["calls"], v["usec"]) for k, v in info.items()}

    async def phase(self, name: str, work: Awaitable[T]) -> T:
        """Await ``work`` (not started yet) and count what it costs under phase ``name``."""
        before = await self._commandstats()
        self._callgrind("-z")
        result = await work
        if self.pid is not None:
            self._callgrind("-d")
            self.dumps[name].append(self._last_dump())
        for cmd, (calls, usec) in (await self._commandstats()).items():
            c0, u0 = before.get(cmd, (0, 0))
            if cmd != "info" and calls > c0:
                self.stats[name][cmd + ":calls"] += calls - c0
                self.stats[name][cmd + ":usec"] += usec - u0
        return result

    def _callgrind(self, flag: str) -> None:
        if self.pid is not None:
            subprocess.run(["callgrind_control", flag, str(self.pid)], capture_output=True)

    def _last_dump(self) -> Path:
        dumps = sorted(self.out.parent.glob(self.out.name + ".*"), key=lambda p: p.stat().st_mtime)
        return dumps[-1]

    def instructions(self, name: str) -> int:
        total = 0
        for dump in self.dumps[name]:
            text = subprocess.run(
                ["callgrind_annotate", "--auto=no", "--inclusive=yes", "--threshold=100", dump],
                capture_output=True,
                text=True,
            ).stdout
            found = re.search(r"^\s*([\d,]+) \([ \d.]+%\)\s+\S*:fcallCommand", text, re.M)
            total += int(found.group(1).replace(",", "")) if found else 0
        return total


@contextlib.contextmanager
def server(callgrind: bool, out: Path) -> Iterator[tuple[str, int | None]]:
    """A private redis-server: its URL and, under callgrind, valgrind's pid."""
    if not callgrind:
        with RedisServer() as plain:
            yield plain.url, None
        return
    port = free_port()
    binary = shutil.which("redis-server") or "redis-server"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no"]
    proc = subprocess.Popen(
        [*valgrind, binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        ping = redis.Redis.from_url(url)
        deadline = time.monotonic() + 60
        while True:
            try:
                ping.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        ping.close()
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=60)


async def hosted_swarm(
    url: str, namespace: str, capacity: int
) -> tuple[Client, Scripts, Keys, TaskStore]:
    """A client on ``url``, its scripts, keys and task store in ``namespace``, and swarm ``a``
    of ``capacity`` hosted by worker ``w1``: the first script call, which loads the function
    library, made here, outside any counts."""
    settings = Settings(redis_url=url, redis_url_explicit=True, namespace=namespace)
    client = connect(settings)
    scripts, keys = Scripts(client, reconnect_timeout_s=10.0), Keys(namespace)
    await SwarmRegistry(scripts, keys).host_swarms(
        "w1", {"host": "bench", "pid": 0}, [swarm_spec("a", [], capacity=capacity)]
    )
    return client, scripts, keys, TaskStore(scripts, keys)


async def run(
    url: str, pid: int | None, out: Path, n: int, deps: bool, single: bool = False
) -> Profiler:
    client, scripts, keys, store = await hosted_swarm(url, "cost", capacity=n + 10)
    # (one task at a time under callgrind outlasts 30 s, and nothing here renews the lease)
    lease_ms = 3_600_000 if single else 30_000
    coord = SwarmCoordinator(scripts, keys, lease_ms=lease_ms, batch_size=8)
    assert await coord.election.try_acquire()
    specs = [
        (
            task_spec(
                NOOP, id=f"t{i:06d}", depends_on=[f"t{i - i % 10:06d}"] if deps and i % 10 else []
            ),
            None,
        )
        for i in range(n)
    ]
    prof = Profiler(client, pid, out)
    if single:  # one task at a time through each script: the per-call fixed cost
        for spec in specs:
            await prof.phase("submit", store.submit([spec]))
            await prof.phase("dispatch", _dispatch_all(coord))
            got = await prof.phase("claim", store.claim("a", "w1", 1))
            await prof.phase(
                "finish", store.finish("w1", [Outcome(c.id, c.token, "ok", b"\xc0") for c in got])
            )
        await client.aclose()
        return prof
    for start in range(0, n, 50):
        await prof.phase("submit", store.submit(specs[start : start + 50]))
    done = 0
    while done < n:  # with --deps, a round releases the dependents of the one before
        await prof.phase("dispatch", _dispatch_all(coord))
        claimed = await prof.phase("claim", _claim_all(store))
        for batch in claimed:
            outcomes = [Outcome(c.id, c.token, "ok", b"\xc0") for c in batch]
            replies = await prof.phase("finish", store.finish("w1", outcomes))
            done += replies.count("completed")
    await client.aclose()
    return prof


FLOOR_LUA = Path(__file__).resolve().parent / "floor_protocol.lua"


async def run_floor(url: str, pid: int | None, out: Path, n: int) -> Profiler:
    """The four phases through ``floor_protocol.lua`` (decision 90), batched as :func:`run`."""
    client = connect(Settings(redis_url=url, redis_url_explicit=True, namespace="floor"))
    await client.function_load(FLOOR_LUA.read_text(), replace=True)
    k = {name: f"{{floor}}:{name}" for name in ("tasks", "payload", "state", "ready", "stats")}
    k |= {name: f"{{floor}}:{name}" for name in ("queue", "swarms", "leases", "result", "done")}
    record = msgspec.msgpack.encode(task_spec(NOOP))
    ids = [f"t{i:06d}" for i in range(n)]
    prof = Profiler(client, pid, out)

    async def fcall(name: str, keys: list[str], *args: Any) -> Any:
        return await client.fcall(name, len(keys), *keys, *args)

    for start in range(0, n, 50):
        args = [a for tid in ids[start : start + 50] for a in (tid, record, b"\xc0")]
        keys = [k["tasks"], k["payload"], k["state"], k["ready"], k["stats"]]
        await prof.phase("submit", fcall("floor_submit", keys, *args))
    done = 0
    while done < n:
        keys = [k["state"], k["ready"], k["queue"], k["swarms"]]
        while await prof.phase("dispatch", fcall("floor_dispatch", keys, "a", 8)):
            pass
        keys = [k["state"], k["queue"], k["leases"], k["tasks"], k["payload"], k["stats"]]
        batches = []
        while got := await prof.phase("claim", fcall("floor_claim", keys, "w1", 8, 30_000)):
            batches.append(got[0])
        keys = [k["state"], k["leases"], k["result"], k["done"], k["stats"], k["swarms"]]
        for batch in batches:
            args = [a for tid in batch for a in (tid, b"\xc0")]
            replies = await prof.phase("finish", fcall("floor_finish", keys, "w1", "a", *args))
            done += [r.decode() if isinstance(r, bytes) else r for r in replies].count("completed")
    await client.aclose()
    return prof


async def _dispatch_all(coord: SwarmCoordinator) -> None:
    while await coord.dispatch_once():
        pass


async def _claim_all(store: TaskStore) -> list[list[Claimed]]:
    batches: list[list[Claimed]] = []
    while got := await store.claim("a", "w1", 8):
        batches.append(got)
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--deps", action="store_true")
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument(
        "--single",
        action="store_true",
        help="one task per call of each script (the single-task round trip's fixed costs)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run the phases through floor_protocol.lua on the same server (decision 90)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument(
        "--commands", action="store_true", help="add the commands per task of each phase, by name"
    )
    parser.add_argument(
        "--keep-dumps", metavar="DIR", help="keep callgrind's dumps in DIR (callgrind_annotate)"
    )
    args = parser.parse_args()
    n: int = args.tasks
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep_dumps or tmp) / "callgrind.out"
        out.parent.mkdir(parents=True, exist_ok=True)
        with server(args.callgrind, out) as (url, pid):
            prof = asyncio.run(run(url, pid, out, n, args.deps, args.single))
            floor = asyncio.run(run_floor(url, pid, out, n)) if args.floor else None
        rows = _rows(prof, n, pid)
        floor_rows = _rows(floor, n, pid) if floor is not None else None
        by_name: dict[str, dict[str, float]] = {}
        for name in PHASES:
            st = prof.stats[name]
            if args.commands:
                by_name[name] = {
                    k.removesuffix(":calls"): round(v / n, 2)
                    for k, v in sorted(st.items())
                    if k.endswith(":calls") and k != "fcall:calls"
                }
    total = _total(rows)
    report: dict[str, Any] = {
        "tasks": n,
        "deps": args.deps,
        "single": args.single,
        "callgrind": args.callgrind,
        "phases": rows,
    }
    if floor_rows is not None:
        report["floor_phases"] = floor_rows
        report["floor_total"] = _total(floor_rows)
    print(json.dumps({**report, "total": total}, indent=1))
    if by_name:
        print(json.dumps({"commands_per_task": by_name}, indent=1))
    if not args.no_write:
        _write(report, total)


def _rows(prof: Profiler, n: int, pid: int | None) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for name in PHASES:
        st = prof.stats[name]
        inner = sum(v for k, v in st.items() if k.endswith(":calls") and k != "fcall:calls")
        row = {
            "fcalls": st["fcall:calls"],
            "usec_per_task": round(st["fcall:usec"] / n, 1),
            "redis_calls_per_task": round(inner / n, 2),
        }
        if pid is not None:
            row["k_instructions_per_task"] = round(prof.instructions(name) / n / 1000, 1)
        rows[name] = row
    return rows


def _total(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each column summed over the phases."""
    return {k: round(sum(r.get(k, 0.0) for r in rows.values()), 1) for k in rows["submit"]}


def _write(report: dict[str, Any], total: dict[str, float]) -> None:
    cols = list(total)
    lines = [
        "## Redis work per task of the lifecycle scripts (`benchmarks/bench_script_cost.py`)",
        "",
        f"Machine: {machine()}  ",
        f"Command: `python3 {' '.join(sys.argv)}` ({datetime.date.today()})",
        "",
        f"{report['tasks']} no-op tasks straight through the scripts ("
        + (
            "one task per call of each"
            if report["single"]
            else "submit 50, dispatch, claim and finish 8 per call"
        )
        + "), no worker; Redis time from `INFO commandstats` (wall clock"
        " inside Redis: take the least of a few runs)"
        + (", instructions from callgrind" if report["callgrind"] else "")
        + (", 9 of 10 tasks depending on the 10th" if report["deps"] else "")
        + ":",
        "",
        "| phase | " + " | ".join(c.replace("_", " ") for c in cols) + " |",
        "| --- |" + " ---: |" * len(cols),
    ]
    for name, row in [*report["phases"].items(), ("total", total)]:
        lines.append(f"| {name} | " + " | ".join(str(row.get(c, "")) for c in cols) + " |")
    if "floor_phases" in report:
        floor = [*report["floor_phases"].items(), ("total", report["floor_total"])]
        for name, row in floor:
            lines.append(
                f"| floor: {name} | " + " | ".join(str(row.get(c, "")) for c in cols) + " |"
            )
        lines += [
            "",
            "floor: the same phases through `benchmarks/floor_protocol.lua` on the same server, "
            "a protocol that keeps nothing per task but a state string and a record no script "
            "decodes (no request records, fencing, strategies, events or indexes; decision 90).",
        ]
    update_section("script-cost", "\n".join(lines))


if __name__ == "__main__":
    main()
