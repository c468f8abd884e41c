"""Large task inputs reach agents through the node's shared-memory pool: the agent reads them
in place by offset (real processes and a real shared segment)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from multiswarm.agents import AgentProcess
from multiswarm.config import Settings
from multiswarm.messages import pack, unpack
from multiswarm.placement import SHARED_INPUT_BYTES, NodeMemory, agent_inputs
from multiswarm.tasks import task_spec

from .helpers import eventually
from .test_worker_concurrency import _system

pytestmark = pytest.mark.slow

DIGEST = "tests.integration.agent_handlers:digest"


async def test_an_agent_reads_a_large_input_in_the_shared_pool() -> None:
    memory = NodeMemory(4 * 1024 * 1024, n_agents=1, shared=True)
    agent = AgentProcess("m.a0", ("tests.",), concurrency=2)
    try:
        blob, dep_blob = os.urandom(256 * 1024), os.urandom(100 * 1024)
        payload, deps = pack({"blob": blob}), {"d1": pack({"blob": dep_blob})}
        alloc = memory.admit(0, [payload, *deps.values()])
        assert alloc is not None
        size = len(payload) + len(deps["d1"])
        sent_payload, sent_deps = agent_inputs(memory, alloc, size, payload, deps)
        # references, not bytes: nothing large goes through the pipe
        assert sent_payload == ("shm", memory.pool.shm_name, alloc.offset, len(payload))
        assert sent_deps["d1"][2] == alloc.offset + len(payload)
        kind, data = await agent.run("big", 1, DIGEST, sent_payload, sent_deps, 60.0)
        assert kind == "ok", data
        assert unpack(data) == {
            "blob": hashlib.sha256(blob).hexdigest(),
            "deps": {"d1": hashlib.sha256(dep_blob).hexdigest()},
        }
        memory.release(alloc)
    finally:
        await agent.stop()
        memory.close()


def test_small_inputs_and_local_pools_go_through_the_pipe() -> None:
    shared = NodeMemory(1024 * 1024, n_agents=1, shared=True)
    local = NodeMemory(1024 * 1024, n_agents=1)
    try:
        small = b"x" * (SHARED_INPUT_BYTES - 1)
        alloc = shared.admit(0, [small])
        assert agent_inputs(shared, alloc, len(small), small, {}) == (small, {})
        large = b"y" * SHARED_INPUT_BYTES
        alloc = local.admit(0, [large])
        assert agent_inputs(local, alloc, len(large), large, {}) == (large, {})
    finally:
        shared.close()
        local.close()


async def test_a_worker_runs_a_task_with_a_large_input_end_to_end(
    settings: Settings, tmp_path: Path
) -> None:
    async with _system(settings, tmp_path, concurrency=2) as (store, _marks):
        blob = os.urandom(256 * 1024)
        spec = task_spec(DIGEST, id="big", capabilities=["conc"])
        await store.submit([(spec, {"blob": blob})])

        async def done() -> bool:
            return (await store.get("big")).status == "completed"

        await eventually(done, timeout_s=60, what="the large task completed")
        assert await store.result("big") == {"blob": hashlib.sha256(blob).hexdigest(), "deps": {}}
