"""Worker-side placement: the scheduling kernel picks agents by strategy and health; the node's
region pool admits task inputs."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from typing import Any, cast

import pytest

from multiswarm import kernel_warmup, placement
from multiswarm.kernels import reference_memory
from multiswarm.placement import NodeMemory, SwarmAgents, health_code


class FakeAgent:
    def __init__(self, failures: int = 0, alive: bool = True) -> None:
        self.consecutive_failures = failures
        self.alive = alive


def _swarm(failures: list[int], strategy: str) -> SwarmAgents:
    return SwarmAgents(cast(Any, [FakeAgent(f) for f in failures]), 0, strategy)


@pytest.mark.parametrize(("failures", "code"), [(0, 0), (1, 1), (2, 1), (3, 2), (5, 2), (6, 3)])
def test_health_from_consecutive_failures(failures: int, code: int) -> None:
    assert health_code(failures) == code


def test_unhealthy_and_dead_agents_get_no_work() -> None:
    swarm = _swarm([0, 4, 1, 7], "least_loaded")
    assert swarm.placeable() == 2
    assert sorted(swarm.place([1] * 4)) == [-1, -1, 0, 2]  # two tasks find no agent: reported
    assert swarm.placeable() == 0
    swarm.done(2)
    assert swarm.place([1] * 1) == [2]


def test_dead_and_retired_members_get_no_work() -> None:
    swarm = SwarmAgents(
        cast(Any, [FakeAgent(), FakeAgent(alive=False), FakeAgent()]), 0, "round_robin"
    )
    swarm.retired[2] = True
    assert swarm.placeable() == 1
    assert swarm.place([1] * 3) == [0, -1, -1]
    new = swarm.add(cast(Any, FakeAgent()), node=3)
    swarm.done(0)
    assert sorted(swarm.place([1] * 2)) == [0, new]


def test_round_robin_rotates_across_batches() -> None:
    swarm = _swarm([0, 0, 0], "round_robin")
    picks = []
    for _ in range(6):
        (i,) = swarm.place([1] * 1)
        picks.append(i)
        swarm.done(i)
    assert picks == [0, 1, 2, 0, 1, 2]


def test_busy_agents_are_skipped_by_every_strategy() -> None:
    for strategy in ("round_robin", "least_loaded", "load_balanced", "capability"):
        swarm = _swarm([0, 0, 0], strategy)
        first = swarm.place([1] * 2)
        assert sorted(first) == sorted(set(first)) and -1 not in first, strategy
        assert swarm.place([1] * 2) == [3 - sum(first), -1], strategy


def test_agents_take_up_to_their_concurrency_least_loaded_first() -> None:
    swarm = SwarmAgents(cast(Any, [FakeAgent(), FakeAgent(), FakeAgent(1)]), 0, "least_loaded", 3)
    assert swarm.placeable() == 9
    assert swarm.place([1] * 4) == [0, 1, 2, 0]  # by load, ties to the lowest index
    assert swarm.load == [2, 1, 1] and swarm.placeable() == 5
    swarm.done(0)
    swarm.done(0)
    assert swarm.place([1] * 2) == [0, 0]
    assert swarm.place([1] * 6) == [1, 2, 0, 1, 2, -1]  # nine slots, eight taken before
    assert swarm.placeable() == 0


def test_urgent_tasks_are_placed_first_when_slots_are_short() -> None:
    swarm = SwarmAgents(cast(Any, [FakeAgent(), FakeAgent()]), 0, "least_loaded", 1)
    assert swarm.place([2, 1, 0]) == [-1, 1, 0]  # low, normal, high: the low one waits


def test_a_task_needing_a_capability_its_swarm_lacks_is_not_placed() -> None:
    swarm = SwarmAgents(cast(Any, [FakeAgent()]), 0, "capability", 4, ["parse", "gpu"])
    assert swarm.place([1, 1, 1, 1], ["gpu", "parse,gpu", "", "ocr"]) == [0, 0, 0, -1]
    assert swarm.caps == [0b11]


def test_memory_admission_and_release() -> None:
    region = 64 * 1024
    memory = NodeMemory(total_bytes=4 * region, region_bytes=region, n_agents=2)
    a = memory.admit(0, [b"x" * region, b"y" * 10])  # two regions
    assert a is not None
    assert bytes(memory.pool.view(a)[region : region + 10]) == b"y" * 10
    assert memory.admit(0, [b"z"]) is None  # agent 0's limit (half the pool) reached
    b = memory.admit(1, [b"z" * region])
    assert b is not None
    used, total, share = memory.load()
    assert (used, total, share) == (3 * region, 4 * region, 0.75)
    memory.release(a)
    assert memory.load()[0] == region
    assert memory.admit(1, [b"w" * (3 * region)]) is None  # over agent 1's limit
    assert memory.refused == 2


@pytest.mark.parametrize("strategy", ["round_robin", "least_loaded", "load_balanced", "capability"])
def test_the_kernel_places_as_its_reference_did_before_the_warm_up(strategy: str) -> None:
    def placements() -> list[list[int]]:
        swarm = SwarmAgents(
            cast(Any, [FakeAgent(), FakeAgent(2), FakeAgent(), FakeAgent(4)]),
            0,
            strategy,
            3,
            ["a", "b"],
        )
        out = [swarm.place([1, 0, 2, 1, 1], ["a", "", "a,b", "b", ""])]
        swarm.done(out[0][0])
        out.append(swarm.place([2, 2, 0], ["b", "", ""]))
        return out

    kernel_warmup._kernel_ready.clear()
    before = placements()  # the Python reference
    placement.warm_up()
    assert kernel_warmup._kernel_ready.is_set()
    assert placements() == before


def test_a_pool_started_on_the_python_reference_carries_on_with_the_kernels() -> None:
    """A worker starts serving before Numba is loaded: its pool runs on the reference, then
    on the kernels over the same region table (allocations made before stay valid)."""
    region = 64 * 1024
    memory = NodeMemory(total_bytes=4 * region, region_bytes=region, n_agents=2, kernels=False)
    assert memory.pool._ops is reference_memory
    a = memory.admit(0, [b"x" * (region + 1)])  # two regions, before the switch
    assert a is not None
    small = memory.admit(1, [b"s" * 10])  # read through the pipe: only counted
    assert isinstance(small, placement.Counted) and memory.counted == {1: 1}
    assert memory.load()[0] == 3 * region
    two = memory.admit(1, [b"s"] * 2)
    assert two is not None and memory.admit(1, [b"s"]) is None  # limit
    assert memory.refused == 1
    memory.release(small)
    memory.release(two)
    placement.warm_up()
    memory.use_kernels()
    from multiswarm.kernels import memory_kernels

    assert memory.pool._ops is memory_kernels
    b = memory.admit(1, [b"y" * 10])  # still only counted: its agent reads it from the pipe
    assert isinstance(b, placement.Counted) and memory.counted == {1: 1}
    c = memory.admit(1, [b"y" * region])  # a large one is placed, by the kernels
    assert c is not None and not isinstance(c, placement.Counted)
    assert c.offset == 2 * region  # the kernels see a's regions as taken
    assert memory.admit(0, [b"z"]) is None  # agent 0's limit still counts a
    assert memory.admit(1, [b"z"]) is None  # agent 1's: one counted and one placed region
    memory.release(a)
    assert memory.load()[0] == 2 * region  # c, and one region counted for agent 1
    memory.release(b)
    assert memory.admit(1, [b"z"]) is not None
    memory.close()


async def test_the_kernels_load_once_the_worker_holds_no_task() -> None:
    memory = NodeMemory(total_bytes=2 * 64 * 1024, n_agents=1, kernels=False)
    assert memory.admit(0, [b"small"]) is not None and memory.share_bytes(0) == 2 * 64 * 1024
    assert memory._pool is None  # no segment yet: small inputs are only counted
    busy = [True]
    load = asyncio.create_task(
        kernel_warmup.warm_up_when_idle(memory, lambda: busy[0], lambda: 0, 0.05)
    )
    await asyncio.sleep(0.2)
    assert not load.done() and not memory.kernels  # busy: still on the Python paths
    busy[0] = False
    await asyncio.wait_for(load, 30)
    assert memory.kernels and kernel_warmup.kernels_ready()
    assert memory._pool is not None and memory.load()[0] == 64 * 1024  # the counted input
    memory.close()


async def test_the_kernels_wait_for_a_span_without_claims() -> None:
    """A trickle of short tasks (round trips one after another) leaves the worker holding
    nothing at every look; the load waits until claims stop too. Each of the first 20 looks
    finds a new claim (5 times the looks of an idle span), whatever the clock does."""
    memory = NodeMemory(total_bytes=2 * 64 * 1024, n_agents=1, kernels=False)
    looks = [0]

    def taken() -> int:
        looks[0] += 1
        return min(looks[0], 20)

    load = kernel_warmup.warm_up_when_idle(memory, lambda: False, taken, 0.05)
    await asyncio.wait_for(load, 30)
    # the old rule (nothing held at four looks) loaded after 4 looks, never asking
    assert memory.kernels and looks[0] > 20
    memory.close()


def test_placement_before_the_warm_up_imports_no_numpy() -> None:
    """A worker's first batches are placed before NumPy is loaded (decision 87): importing it
    is ~0.1 s of CPU on a start-up that is CPU-bound until the first task runs."""
    code = (
        "import sys\n"
        "from typing import Any, cast\n"
        "from multiswarm.placement import SwarmAgents\n"
        "class A:\n"
        "    consecutive_failures, alive = 0, True\n"
        "s = SwarmAgents(cast(Any, [A(), A()]), 0, 'capability', 2, ['a'])\n"
        "print(s.place([1, 0, 2], ['a', '', 'a']), 'numpy' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    picks, numpy_loaded = out.stdout.rsplit(" ", 1)
    assert numpy_loaded.strip() == "False"
    assert sorted(json.loads(picks)) == [0, 0, 1]  # every task placed, within each capacity


@pytest.mark.parametrize("strategy", ["round_robin", "least_loaded", "load_balanced", "capability"])
def test_lists_and_kernel_place_random_batches_alike(strategy: str) -> None:
    rng = random.Random(f"placement-{strategy}")
    caps = ["a", "b", "c"]

    def run() -> list[list[int]]:
        r = random.Random(rng.random())  # both runs see the same batches
        failures = [r.choice([0, 0, 0, 1, 3, 6]) for _ in range(7)]
        swarm = SwarmAgents(cast(Any, [FakeAgent(f) for f in failures]), 0, strategy, 3, caps)
        out = []
        for _ in range(20):
            n = r.randint(1, 12)
            prios = [r.randint(0, 2) for _ in range(n)]
            need = [",".join(r.sample(caps, r.randint(0, 2))) for _ in range(n)]
            picks = swarm.place(prios, need)
            out.append(picks)
            for a in picks:
                if a >= 0 and r.random() < 0.7:
                    swarm.done(a)
        return out

    state = rng.getstate()
    kernel_warmup._kernel_ready.clear()
    before = run()
    rng.setstate(state)
    placement.warm_up()
    assert before == run()
    assert any(a >= 0 for picks in before for a in picks)
