"""An agent added to a swarm (scale-up, replacement) gets an id in the node's memory pool that no
other agent of the worker has.

Before, an agent's id was its swarm's first id plus its index in the swarm, and a swarm's added
agents take indexes past its original ones: on a worker hosting two swarms, an agent added to
the first took the id of the second's first agent. Both then counted against one memory share,
the scale-up lowered the other agent's limit, and replacing the added agent later collected the
other agent's pinned inputs while its run could still read them (found in review).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from multiswarm.config import Settings
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts
from tests.faults.inprocess import System, worker_system
from tests.integration.helpers import eventually

pytestmark = pytest.mark.slow


async def hosting(system: System, *swarm_ids: str) -> SwarmRegistry:
    """The registry, once the worker hosts ``swarm_ids``."""
    registry = SwarmRegistry(Scripts(system.store.client), system.keys)

    async def hosted() -> bool:
        return set(swarm_ids) <= set(await registry.swarm_ids())

    await eventually(hosted, what=f"the worker hosting {swarm_ids}")
    return registry


async def test_an_agent_added_to_one_swarm_shares_no_pool_id_with_another(
    settings: Settings, tmp_path: Path
) -> None:
    swarms = [swarm_spec("a", ["x"], agents=1), swarm_spec("b", ["y"], agents=1)]
    async with worker_system(settings, swarms, tmp_path) as system:
        worker = system.worker
        registry = await hosting(system, "a", "b")
        assert worker.memory is not None
        b_node = worker.placement["b"].nodes[0]
        b_share = worker.memory.share_bytes(b_node)
        assert (await registry.scale("a", 2))[0] == 2

        async def scaled() -> bool:
            return len(worker.placement["a"].agents) == 2

        await eventually(scaled, what="a second agent in swarm a")
        nodes = [n for swarm in worker.placement.values() for n in swarm.nodes]
        assert len(set(nodes)) == len(nodes) == 3, nodes
        assert worker.memory.share_bytes(b_node) == b_share  # b's agent keeps its share


async def test_a_replacement_agent_gets_its_predecessor_s_share(
    settings: Settings, tmp_path: Path
) -> None:
    """A replacement got a pool id of its own but no limit: it could pin the whole pool, and an
    input too large for any share was admitted instead of refused (found in review)."""
    async with worker_system(settings, [swarm_spec("a", ["x"], agents=1)], tmp_path) as system:
        worker = system.worker
        await hosting(system, "a")
        assert worker.memory is not None
        old = worker.placement["a"].nodes[0]
        share = worker.memory.pool.limit(old)
        assert share is not None
        await worker._replace_agent("a", 0)
        new = worker.placement["a"].nodes[-1]
        assert new != old and worker.memory.pool.limit(new) == share


async def test_scaling_down_and_up_again_reuses_the_places_it_left(
    settings: Settings, tmp_path: Path
) -> None:
    """Each scale-up added a place (index, pool id, record entry) for good and gave the new
    agent a share of the pool over every agent the worker ever had: scaled 2 -> 1 -> 2 five
    times, the swarm kept 7 places and its last agent a third of the share (found in review)."""
    async with worker_system(settings, [swarm_spec("a", ["x"], agents=2)], tmp_path) as system:
        worker = system.worker
        registry = await hosting(system, "a")
        assert worker.memory is not None
        swarm = worker.placement["a"]
        shares = [worker.memory.pool.limit(n) for n in swarm.nodes]
        for _ in range(5):
            for target in (1, 2):
                assert (await registry.scale("a", target))[0] == target

                async def reached(target: int = target) -> bool:
                    live = [a for i, a in enumerate(swarm.agents) if not swarm.retired[i]]
                    return len(live) == target and all(a.alive for a in live)

                await eventually(reached, timeout_s=30, what=f"{target} live agents")
        assert len(swarm.agents) == len(swarm.nodes) == 2
        assert len(worker.agents) == 2 and len(worker.member_states()) == 2
        assert [worker.memory.pool.limit(n) for n in swarm.nodes] == shares
