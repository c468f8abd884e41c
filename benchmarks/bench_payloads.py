"""Large task inputs: through the agent's pipe, or through the node's shared-memory pool.

One agent process (:class:`multiswarm.agents.AgentProcess`) runs N tasks whose input is a
256 KiB blob, one after another, twice: the worker's old path (the packed input sent through the
pipe) and the shared path the worker takes from ``SHARED_INPUT_BYTES`` on (the input admitted
into the node's shared :class:`~multiswarm.placement.NodeMemory`, as the worker always did, and
only its offset sent; the agent decodes it in place). Both paths include the admission copy, so
the ratio is what the pipe costs on top. Passes alternate; medians are reported.

Prints one JSON object and rewrites the ``payloads`` section of ``benchmarks/RESULTS.md``
(unless ``--no-write``).

Usage: ``python benchmarks/bench_payloads.py [--tasks N] [--kib K] [--passes P] [--no-write]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _results import machine, update_section  # benchmarks/_results.py

from multiswarm.agents import AgentProcess
from multiswarm.messages import pack, unpack
from multiswarm.placement import NodeMemory, agent_inputs

HANDLER = "payload_tasks:size"


async def run_pass(
    agent: AgentProcess, memory: NodeMemory, payload: bytes, n: int, shared: bool
) -> float:
    """Tasks per second over ``n`` tasks of ``payload``, by the pipe or the shared pool."""
    start = time.perf_counter()
    for i in range(n):
        alloc = memory.admit(0, [payload])
        assert alloc is not None
        try:
            sent: Any = (
                agent_inputs(memory, alloc, len(payload), payload, {})[0] if shared else payload
            )
            kind, data = await agent.run(f"t{i}", 1, HANDLER, sent, {}, 60.0)
            assert kind == "ok" and unpack(data) > 0, (kind, data)
        finally:
            memory.release(alloc)
    return n / (time.perf_counter() - start)


async def bench(n: int, kib: int, passes: int) -> dict[str, Any]:
    payload = pack({"blob": os.urandom(kib * 1024)})
    memory = NodeMemory(n_agents=1, shared=True)
    agent = AgentProcess("bench.a0", (HANDLER.split(":")[0] + ":",))
    rates: dict[str, list[float]] = {"pipe": [], "shared": []}
    try:
        await run_pass(agent, memory, payload, 5, shared=True)  # warm-up: start, import, attach
        await run_pass(agent, memory, payload, 5, shared=False)
        for p in range(passes):
            order = ("pipe", "shared") if p % 2 == 0 else ("shared", "pipe")
            for path in order:
                rates[path].append(await run_pass(agent, memory, payload, n, path == "shared"))
    finally:
        await agent.stop()
        memory.close()
    pipe, shared = statistics.median(rates["pipe"]), statistics.median(rates["shared"])
    return {
        "tasks": n,
        "input_bytes": len(payload),
        "passes": passes,
        "pipe_tasks_per_s": round(pipe, 1),
        "shared_tasks_per_s": round(shared, 1),
        "ratio_shared_over_pipe": round(shared / pipe, 2),
        "all": {k: [round(r, 1) for r in v] for k, v in rates.items()},
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


def render(r: dict[str, Any], command: str) -> str:
    return "\n".join(
        [
            "## Large inputs: pipe vs shared-memory pool (`benchmarks/bench_payloads.py`)",
            "",
            f"Machine: {machine()}; 1-minute load average {r['load_avg_1min']} at the end  ",
            f"Command: `{command}` ({time.strftime('%Y-%m-%d')})",
            "",
            f"One agent process, {r['tasks']} tasks per pass one after another, input "
            f"{r['input_bytes']:,} bytes (a {r['input_bytes'] // 1024} KiB blob, packed), "
            f"{r['passes']} alternating passes, median:",
            "",
            "| path | tasks/s |",
            "| --- | ---: |",
            f"| pipe (input sent through the agent's pipe) | {r['pipe_tasks_per_s']:,.1f} |",
            f"| shared pool (offset sent, agent decodes in place) | "
            f"{r['shared_tasks_per_s']:,.1f} |",
            "",
            f"Shared / pipe: **{r['ratio_shared_over_pipe']:.2f}x**. Both paths copy the input "
            "into the node's pool first (the worker's admission); the pipe path then also "
            "writes it through the pipe and the agent reads it back.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--kib", type=int, default=256)
    parser.add_argument("--passes", type=int, default=4)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)
    result = asyncio.run(bench(args.tasks, args.kib, args.passes))
    print(json.dumps(result, indent=2))
    if not args.no_write:
        command = "python benchmarks/bench_payloads.py" + " ".join(
            f" {a}" for a in (argv if argv is not None else sys.argv[1:])
        )
        update_section("payloads", render(result, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
