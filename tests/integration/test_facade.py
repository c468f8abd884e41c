"""The `Multiswarm` facade against a private Redis: every read the CLI and the HTTP API use
returns a msgspec Struct that encodes to JSON, and the actions do what the components do."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

import multiswarm
from multiswarm import (
    HealthReport,
    InvalidIdError,
    Multiswarm,
    NotFound,
    StatusReport,
    TaskOptions,
    TaskReceipt,
)
from multiswarm.breakers import BreakerConfig, BreakerRegistry
from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.consensus import Consensus
from multiswarm.keys import Keys
from multiswarm.scripts import Scripts

from .helpers import host, leader


@pytest.fixture
async def ms(settings: Settings) -> AsyncIterator[Multiswarm]:
    facade = await Multiswarm.connect(settings=settings, actor="tester")
    yield facade
    await facade.close()


def _json(value: object) -> object:
    return msgspec.json.decode(msgspec.json.encode(value))


async def test_status_leader_and_health(ms: Multiswarm, scripts: Scripts, keys: Keys) -> None:
    assert await ms.leader() is None
    assert await ms.health() == HealthReport(False, "no leader holds the lease")
    await host(scripts, keys, "w1", ("s", ["parse"]))
    coord = await leader(scripts, keys)
    now = await ms.leader()
    assert now is not None and now.holder == coord.election.holder_id and now.epoch == 1
    assert 0 < now.lease_ms_left <= 30_000
    assert (await ms.health()).ok
    report = await ms.status()
    assert isinstance(report, StatusReport) and report.namespace == keys.ns
    [swarm] = report.swarms
    assert (swarm.id, swarm.status, swarm.capabilities, swarm.paused) == (
        "s",
        "active",
        ["parse"],
        False,
    )
    assert [w.id for w in report.workers] == ["w1"] and report.workers[0].beat_ms_ago >= 0
    assert _json(report)["leader"]["holder"] == now.holder  # type: ignore[index]
    assert [s.id for s in await ms.list_swarms("active")] == ["s"]
    assert [w.id for w in await ms.list_workers()] == ["w1"]
    assert await ms.pause_swarm("s") and not await ms.pause_swarm("s")
    assert (await ms.get_swarm("s")).paused
    assert await ms.resume_swarm("s")


async def test_health_says_why_when_redis_does_not_answer(settings: Settings) -> None:
    gone = settings.replace(redis_url="redis://127.0.0.1:1/0")
    ms = Multiswarm(connect(gone), gone)
    try:
        report = await ms.health()
    finally:
        await ms.close()
    assert not report.ok and report.reason.startswith("redis unavailable")


async def test_tasks_options_as_struct_or_keywords(ms: Multiswarm) -> None:
    receipt = await ms.submit_task(
        "m.mod:f", {"x": 1}, TaskOptions(id="a", capabilities=["parse"], priority="high")
    )
    assert receipt == TaskReceipt("a", "ready")
    assert await ms.distribute_task("m.mod:f", None, id="b", depends_on=("a",)) == "b"
    b = await ms.get_task("b")
    assert (b.status, b.dependencies, b.lease_ms) == ("pending", ["a"], ms.settings.task_lease_ms)
    # a keyword wins over the options it is given with
    tid = await ms.distribute_task("m.mod:f", options=TaskOptions(priority="low"), priority="high")
    assert (await ms.get_task(tid)).priority == "high"
    assert [t.id for t in await ms.list_tasks("pending")] == ["b"]
    assert await ms.cancel_task("a", "test") == "cancelled"
    assert (await ms.get_task("b")).reason == "dependency a cancelled"
    with pytest.raises(NotFound):
        await ms.get_result("a")
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"handler": "x", "bogus": 1}, TaskOptions)
    stats = await ms.statistics()
    assert stats.counters.submitted == 3 and stats.counters.cancelled == 2
    assert stats.tasks["cancelled"] == 2 and stats.leader is None


async def test_breakers_resources_votes(ms: Multiswarm, scripts: Scripts, keys: Keys) -> None:
    registry = BreakerRegistry(scripts, keys)
    llm = await registry.get_or_create("llm", BreakerConfig(failure_threshold=1))
    await llm.failure(await llm.acquire(), "timeout")
    [state] = await ms.list_breakers()
    assert (state.name, state.state, state.last_error) == ("llm", "open", "timeout")
    assert await ms.reset_breaker("llm") and not await ms.reset_breaker("nope")
    assert await ms.reset_breakers() == ["llm"]
    assert await ms.init_resource_pool("cpu", 4000) == "created"
    [pool] = await ms.list_resources()
    assert (pool.type, pool.capacity, pool.free) == ("cpu", 4000, 4000)
    assert await ms.release_resources("s1") == {}
    pid = await Consensus(scripts, keys).propose("go?", ["yes", "no"], ["a", "b"], 60_000)
    assert [v.id for v in await ms.list_votes(5)] == [pid]
    assert (await ms.get_vote(pid)).missing == ["a", "b"]


async def test_state_points_and_recovery_reads(ms: Multiswarm) -> None:
    await ms.save_state("k1", {"n": 1})
    assert await ms.create_snapshot("k1") == 1
    assert await ms.create_checkpoint("k1", "before") == 1
    with pytest.raises(InvalidIdError):
        await ms.create_checkpoint("k1", "bad:name")
    [snap] = await ms.list_recovery_points("k1", "snapshot")
    [check] = await ms.list_recovery_points("k1", "checkpoint")
    assert (snap.label, snap.integrity, check.label) == ("manual", "ok", "before")
    await ms.save_state("k1", {"n": 2})
    assert await ms.restore_recovery_point("k1", "checkpoint", "before") == 3
    record = await ms.load_state("k1")
    assert record is not None and record.data == {"n": 1}
    assert await ms.quarantined("k1") == [] and await ms.recovery_log("k1") == []
    assert await ms.list_recoveries() == [] and await ms.plan_recoveries() == {}
    assert _json(await ms.dead_letters(5)) == {"entries": [], "counts": {}}


def test_public_names_are_the_facade_records_and_errors() -> None:
    for name in multiswarm.__all__:
        value = getattr(multiswarm, name)
        # and the handler decorator (multiswarm.handlers), the one function
        assert (
            value is Multiswarm
            or value is multiswarm.handler
            or (
                isinstance(value, type)
                and issubclass(value, (msgspec.Struct, multiswarm.MultiswarmError))
            )
        ), name


def test_every_facade_method_is_documented() -> None:
    methods = {
        name: value
        for name, value in vars(Multiswarm).items()
        if callable(value) and not name.startswith("_")
    }
    assert {"status", "health", "distribute_task", "list_recoveries", "tail"} <= set(methods)
    undocumented = [name for name, fn in methods.items() if not (fn.__doc__ or "").strip()]
    assert undocumented == []
