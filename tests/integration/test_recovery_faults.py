"""Recovery plans whose steps fail or are overtaken, and bad stored input met by recovery and
state writers (found in review, decision 105).

A plan is applied in three steps: begin (interrupted -> recovering, re-queue), record (restore the
chosen source, append the log), finish (recovering -> active or interrupted). A failed restore
must leave the plan to be resumed, and a plan the swarm has left must not restore its source over
what was written since. A hand-edited key of one swarm is that swarm's typed error or quarantine:
never a crash, never the end of a round for the other swarms.
"""

from __future__ import annotations

import json
from typing import Any, cast

import msgspec
import pytest

from multiswarm.connection import Client
from multiswarm.errors import BadRequest, MessageDecodeError
from multiswarm.keys import Keys
from multiswarm.ops.recovery import Begin, begin_recoveries
from multiswarm.recovery import SwarmRecovery
from multiswarm.recovery_plan import RecoveryPlan
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.scripts import Scripts
from multiswarm.state import SwarmStateManager

from .test_recovery import _corrupt_state, interrupted_swarm


async def _with_a_checkpoint_to_restore(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager, client: Client
) -> dict[str, Any]:
    """Swarm s1 interrupted, a checkpoint of its progress, its current state corrupted: a plan
    restores the checkpoint. Returns the checkpoint's data."""
    await interrupted_swarm(scripts, keys, manager, "s1")
    await manager.create_checkpoint("s1", "cp")
    good = await manager.load_state("s1")
    assert good is not None
    await _corrupt_state(client, keys, "s1")
    return dict(good.data)


async def _begin_only(scripts: Scripts, keys: Keys, plan: RecoveryPlan) -> None:
    """The first step of applying ``plan``, with the summary the applier writes: as if the
    applier died right after it."""
    summary = msgspec.json.encode({"source": plan.source, "source_id": plan.source_id})
    step = Begin(
        plan_id=plan.plan_id,
        swarm=plan.swarm,
        interrupted_ms=plan.interrupted_ms,
        summary=summary,
        requeue=list(plan.requeue),
    )
    await begin_recoveries(scripts, keys, [step])


async def test_a_restore_that_fails_leaves_the_plan_to_resume(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager, client: Client
) -> None:
    """The restore step failed (here its log key holds a string) and the plan was finished all
    the same: the swarm left recovering without its state, and no later apply restored it."""
    data = await _with_a_checkpoint_to_restore(scripts, keys, manager, client)
    await client.set(keys.recovery_log("s1"), "not a list")
    failed = await SwarmRecovery(manager).recover("s1")
    assert failed.outcome == "error" and "run it again" in failed.detail
    assert (await SwarmRegistry(scripts, keys).get("s1")).status == "recovering"

    await client.delete(keys.recovery_log("s1"))
    again = await SwarmRecovery(manager).recover("s1")
    assert (again.outcome, again.source) == ("resumed", "checkpoint")
    restored = await manager.load_state("s1")
    assert restored is not None and restored.data == data


async def test_a_begun_plan_the_swarm_left_does_not_restore_over_later_state(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager, client: Client
) -> None:
    """Begun, then overtaken: a worker hosted the swarm (active), saved new progress, and died
    (interrupted again) while an operator held the resumed plan at its prompt. Applied, that plan
    restored its checkpoint over the new progress (and ended superseded)."""
    await _with_a_checkpoint_to_restore(scripts, keys, manager, client)
    recovery = SwarmRecovery(manager)
    plan = await recovery.plan("s1", quarantine=True)
    assert plan.source == "checkpoint"
    await _begin_only(scripts, keys, plan)
    held = await recovery.plan("s1")
    assert held.resume and held.plan_id == plan.plan_id

    registry = SwarmRegistry(scripts, keys)
    await registry.host_swarms("w2", {"host": "test"}, [swarm_spec("s1", ["c"])])
    assert (await registry.get("s1")).status == "active"
    await manager.update_state("s1", lambda d: {**d, "marker": "new work"})
    await registry.transition("s1", "interrupted")

    outcome = await recovery.apply(held)
    assert outcome.outcome == "already_applied", outcome
    state = await manager.load_state("s1")
    assert state is not None and state.data.get("marker") == "new work"


async def test_a_resumed_plan_restores_the_source_it_was_begun_with(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager
) -> None:
    """Begun with `--source checkpoint` and interrupted before its restore, the plan was resumed
    with the default order: it chose the current state and restored nothing (found in review)."""
    await interrupted_swarm(scripts, keys, manager, "s1")
    await manager.create_checkpoint("s1", "cp")
    checkpointed = await manager.load_state("s1")
    assert checkpointed is not None
    await manager.update_state("s1", lambda d: {**d, "marker": "after the checkpoint"})
    recovery = SwarmRecovery(manager)
    plan = await recovery.plan("s1", source="checkpoint")
    await _begin_only(scripts, keys, plan)

    outcome = await recovery.recover("s1")  # no --source: the state manager's resume
    assert (outcome.outcome, outcome.source) == ("resumed", "checkpoint")
    state = await manager.load_state("s1")
    assert state is not None and state.data == checkpointed.data


async def test_a_key_of_another_type_is_its_swarm_s_error_alone(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager, client: Client
) -> None:
    """Replies come in place in the planner's pipeline: a wrong-type key's error reached the
    state check as a value (TypeError), which crashed `recover` and the state manager."""
    await interrupted_swarm(scripts, keys, manager, "s1")
    await interrupted_swarm(scripts, keys, manager, "s2")
    await client.delete(keys.snapshots("s1"))
    await client.set(keys.snapshots("s1"), "not a list")
    plans = await SwarmRecovery(manager).plan_many(["s1", "s2"])
    assert isinstance(plans["s1"], MessageDecodeError) and "s1" in str(plans["s1"])
    assert isinstance(plans["s2"], RecoveryPlan)
    applied, _ = await SwarmRecovery(manager).auto_recover(0.5)
    assert [o.swarm for o in applied if o.outcome == "applied"] == ["s2"]


async def test_one_undecodable_swarm_record_leaves_the_others_recovered(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager, client: Client
) -> None:
    await interrupted_swarm(scripts, keys, manager, "s1")
    await interrupted_swarm(scripts, keys, manager, "s2")
    record = json.loads(cast(bytes, await client.hget(keys.swarms, "s1")))
    await client.hset(keys.swarms, "s1", json.dumps({**record, "max_agents": "x"}))
    applied, _ = await SwarmRecovery(manager).auto_recover(0.5)
    assert [o.swarm for o in applied] == ["s2"]


async def test_a_version_that_is_no_number_is_quarantined_and_saves_go_on(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager, client: Client
) -> None:
    """Hand-edited to text, the version failed every script that counts it: a worker could never
    save its progress again, and the snapshot round stopped at that swarm, so the swarms after it
    got none."""
    registry = SwarmRegistry(scripts, keys)
    await registry.host_swarms("w1", {"host": "t"}, [swarm_spec("a1", []), swarm_spec("b1", [])])
    for sid in ("a1", "b1"):
        await manager.update_state(sid, lambda d: {**d, "n": 1})
    await client.hset(keys.state("a1"), "version", "v7")
    assert await manager.snapshot_round(60_000) == 1  # b1's, after a1's refusal
    assert len(await manager.list_snapshots("b1")) == 1
    assert await manager.update_state("a1", lambda d: {**d, "n": 2}) == 1
    state = await manager.load_state("a1")
    assert state is not None and state.data == {"n": 2}
    (moved,) = await manager.list_quarantine("a1")
    assert moved["kind"] == "state" and moved["id"] == "vv7"


async def test_a_state_saved_after_the_corrupt_one_was_read_is_not_quarantined(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager, client: Client
) -> None:
    """update_state read a corrupt v1, then looked the version up again to quarantine it: a
    state saved in between (an operator's restore) was quarantined instead, and lost."""
    await manager.update_state("s1", lambda d: {"n": 1})
    await _corrupt_state(client, keys, "s1")
    real_read = manager.read
    calls: list[int] = []

    async def restore_after_the_first_read(fn: Any) -> Any:
        got = await real_read(fn)
        if not calls:
            calls.append(1)
            await manager.save_state("s1", {"restored": True})  # v2, valid
        return got

    manager.read = restore_after_the_first_read  # type: ignore[method-assign]
    await manager.update_state("s1", lambda d: {**d, "n": 3})
    state = await manager.load_state("s1")
    assert state is not None and state.data == {"restored": True, "n": 3}
    assert [q["id"] for q in await manager.list_quarantine("s1")] == []


async def test_hand_edited_lists_and_counts_are_refused_or_shown_as_such(
    scripts: Scripts, keys: Keys, manager: SwarmStateManager, client: Client
) -> None:
    """A state recording a billion agents made every plan list a billion agent ids (a hang);
    a quarantine or recovery-log entry that is JSON but no object crashed `recover log` and
    `recover quarantine` (found in review)."""
    with pytest.raises(BadRequest):
        await manager.save_state("s1", {"workers": {"w": {"agents": 10**9}}})
    await client.lpush(keys.quarantine("s1"), "[1, 2]")
    assert [q["reason"] for q in await manager.list_quarantine("s1")] == [
        "unreadable quarantine record"
    ]
    await client.lpush(keys.recovery_log("s1"), '"a string"', '{"plan": "p"}')
    assert await SwarmRecovery(manager).log("s1") == [{"plan": "p"}]
