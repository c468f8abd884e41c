"""Plan building from facts, without Redis (multiswarm/recovery_plan.py)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from multiswarm.errors import NoRecoverySource
from multiswarm.messages import Swarm, Task
from multiswarm.recovery_plan import APPLY_OVERHEAD_MS, PlanFacts, build_plan
from multiswarm.state_codec import RecoveryPoint, StateDoc

INTERRUPTED_MS = 1_000_000


def point(
    kind: str,
    running: list[str],
    agents: int = 2,
    age_ms: int = 1_000,
    completed: list[str] | None = None,
) -> RecoveryPoint:
    data: dict[str, Any] = {
        "swarm": "s",
        "workers": {
            "dead": {"running": running, "agents": agents, "at_ms": 0, "completed": completed or []}
        },
    }
    return RecoveryPoint(
        kind=kind,
        id=f"{kind}-1",
        label=kind,
        version=1,
        captured_ms=INTERRUPTED_MS - age_ms,
        taken_ms=0,
        data=data,
        doc=msgspec.convert(data, StateDoc),
        text=b"{}",
        checksum="",
    )


def task(
    tid: str, status: str, swarm: str = "s", worker: str = "", started: int = 0, finished: int = 0
) -> Task:
    return Task(
        id=tid,
        handler="m:f",
        status=status,
        swarm=swarm,
        worker=worker,
        started_ms=started,
        finished_ms=finished,
    )


def facts(*tasks: Task, live: tuple[str, ...] = ("alive",)) -> PlanFacts:
    return PlanFacts(
        now_ms=INTERRUPTED_MS + 5,
        workers=set(live),
        tasks={t.id: t for t in tasks},
        with_payload={t.id for t in tasks},
        running=[t for t in tasks if t.status == "running"],
    )


SWARM = Swarm(id="s", status="interrupted", max_agents=2, status_ms=INTERRUPTED_MS)


def test_requeue_only_tasks_assigned_or_running_on_dead_workers() -> None:
    f = facts(
        task("a", "assigned"),
        task("r-dead", "running", worker="dead"),
        task("r-live", "running", worker="alive"),
        task("other", "running", swarm="x", worker="dead"),
        task("done", "completed", started=100, finished=400),
    )
    plan = build_plan(
        SWARM,
        {},
        {"state": point("state", ["r-dead", "r-live", "other", "done"])},
        [],
        ["a"],
        f,
        None,
    )
    assert plan.requeue == ["a", "r-dead"]
    assert plan.completed == ["done"]
    assert plan.elsewhere == ["other", "r-live"]
    assert plan.plan_id == f"s@{INTERRUPTED_MS}.0"
    assert plan.agents == ["s.a0", "s.a1"]
    assert plan.confidence == 0.95
    # two tasks over two agents: one wave as long as the completed task took
    assert plan.estimated_ms == APPLY_OVERHEAD_MS + 300


def test_sources_in_order_and_alternatives() -> None:
    f = facts(task("a", "assigned"))
    points = {"snapshot": point("snapshot", []), "checkpoint": point("checkpoint", [])}
    plan = build_plan(SWARM, {}, points, [], ["a"], f, None)
    assert plan.source == "checkpoint"
    assert [a.source for a in plan.alternatives] == ["snapshot"]
    assert plan.restore == b"{}"
    assert build_plan(SWARM, {}, points, [], [], f, "snapshot").source == "snapshot"
    with pytest.raises(NoRecoverySource):
        build_plan(SWARM, {}, points, [], [], f, "state")
    none = build_plan(SWARM, {}, {}, [], ["a"], f, None)
    assert (none.source, none.confidence, none.requeue) == ("none", 0.5, ["a"])


def test_missing_definitions_lower_confidence() -> None:
    f = facts(task("a", "running", worker="dead"))
    f.with_payload.clear()  # the record is there, the payload is not
    plan = build_plan(SWARM, {}, {"state": point("state", ["a", "ghost"])}, [], [], f, None)
    assert plan.missing == ["a", "ghost"]
    assert plan.evidence.tasks == 0.0 and plan.confidence == 0.5


def test_a_begun_plan_resumes_with_its_recorded_id() -> None:
    swarm = msgspec.structs.replace(SWARM, status="recovering")
    rec = {"plan": "s@1.0", "state": "recovering", "interrupted_ms": INTERRUPTED_MS}
    plan = build_plan(swarm, rec, {"state": point("state", [])}, [], [], facts(), None)
    assert plan.resume and plan.plan_id == "s@1.0"


def test_auto_recover_threshold_from_the_environment() -> None:
    from multiswarm.config import from_env
    from multiswarm.errors import ConfigError

    name = "MULTISWARM_AUTO_RECOVER_MIN_CONFIDENCE"
    assert from_env({}).auto_recover_min_confidence == 0.75
    assert from_env({name: "0.9"}).auto_recover_min_confidence == 0.9
    for bad in ("high", "1.5", "-0.1", "nan"):
        with pytest.raises(ConfigError):
            from_env({name: bad})
