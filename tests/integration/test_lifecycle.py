"""Task lifecycle on a real Redis: dependencies, leases, retries, dead-letter, cancellation,
exactly-once completion records."""

from __future__ import annotations

import msgspec
import pytest

from multiswarm.errors import (
    AlreadyExists,
    BadRequest,
    InvalidIdError,
    NotFound,
    UnknownDependency,
)
from multiswarm.keys import Keys
from multiswarm.ops.tasks import Outcome
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import eventually, host, leader

NOOP = "multiswarm.demo_tasks:noop"


async def _status(store: TaskStore, *ids: str) -> list[str]:
    return [t.status if t else "missing" for t in await store.get_many(list(ids))]


async def _run_one(store: TaskStore, coord, swarm: str = "s", worker: str = "w1") -> str:  # type: ignore[no-untyped-def]
    await coord.dispatch_once()
    (c,) = await store.claim(swarm, worker, 1)
    assert await store.complete(c.id, c.token, worker, {"done": c.id}) == "completed"
    return c.id


@pytest.fixture
async def world(scripts: Scripts, keys: Keys):  # type: ignore[no-untyped-def]
    await host(scripts, keys, "w1", ("s", []))
    return TaskStore(scripts, keys), await leader(scripts, keys)


async def test_dependencies_run_in_order(world) -> None:  # type: ignore[no-untyped-def]
    store, coord = world
    a, b = task_spec(NOOP, id="a"), task_spec(NOOP, id="b")
    c = task_spec(NOOP, id="c", depends_on=["a", "b"])
    d = task_spec(NOOP, id="d", depends_on=["c"])
    assert await store.submit([(a, 1), (b, 2), (c, 3), (d, 4)]) == {
        "a": "ready",
        "b": "ready",
        "c": "pending",
        "d": "pending",
    }
    assert await coord.dispatch_once() == 2  # only a and b can go
    order = [await _run_one(store, coord)]
    assert await _status(store, "c", "d") == ["pending", "pending"]  # c still waits on one
    order.append(await _run_one(store, coord))
    assert await _status(store, "c", "d") == ["ready", "pending"]
    order.append(await _run_one(store, coord))
    order.append(await _run_one(store, coord))
    assert order[2:] == ["c", "d"] and sorted(order[:2]) == ["a", "b"]
    # a task whose dependency already completed is ready at once
    assert await store.submit([(task_spec(NOOP, id="e", depends_on=["a"]), None)]) == {"e": "ready"}


async def test_a_dependency_named_twice_releases_its_task(world) -> None:  # type: ignore[no-untyped-def]
    """Named twice, a dependency was counted twice in ``deps_left`` but had one edge to release
    it: the task stayed pending for good once it completed (found in review)."""
    store, coord = world
    t = task_spec(NOOP, id="t", depends_on=["d", "d"])
    assert t.deps == "d"
    assert await store.submit([(task_spec(NOOP, id="d"), 1), (t, 2)]) == {
        "d": "ready",
        "t": "pending",
    }
    assert await coord.dispatch_once() == 1
    assert await _run_one(store, coord) == "d"
    assert await _status(store, "t") == ["ready"]
    # a spec that names one twice all the same (not built by task_spec) is refused, saying so
    twice = msgspec.structs.replace(task_spec(NOOP, id="u", depends_on=["d"]), deps="d,d")
    with pytest.raises(BadRequest, match="names dependency d twice"):
        await store.submit([(twice, None)])


async def test_completion_is_recorded_exactly_once(world, keys: Keys) -> None:  # type: ignore[no-untyped-def]
    store, coord = world
    await store.submit([(task_spec(NOOP, id="t"), None)])
    await coord.dispatch_once()
    (c,) = await store.claim("s", "w1", 1)
    assert await store.complete("t", c.token, "w1", "first") == "completed"
    assert await store.complete("t", c.token, "w1", "second") == "duplicate"
    assert await store.complete("t", "9@other", "w2", "third") == "duplicate"
    assert await store.result("t") == "first"
    entries = await store.client.xrange(keys.completions)
    assert [f[b"task"] for _, f in entries] == [b"t"]
    assert (await store.stats())["duplicate_results"] == 2


async def test_retry_backoff_then_dead_letter(world, keys: Keys) -> None:  # type: ignore[no-untyped-def]
    store, coord = world
    spec = task_spec(NOOP, id="flaky", max_attempts=3, backoff_ms=200, backoff_max_ms=10_000)
    child = task_spec(NOOP, id="child", depends_on=["flaky"])
    grandchild = task_spec(NOOP, id="grandchild", depends_on=["child"])
    await store.submit([(spec, None), (child, None), (grandchild, None)])
    delays = []
    for attempt in (1, 2, 3):
        await eventually(coord.dispatch_once, what=f"attempt {attempt} dispatched")
        (c,) = await store.claim("s", "w1", 1)
        assert c.attempts == attempt
        outcome = await store.fail("flaky", c.token, f"boom {attempt}")
        t = await store.get("flaky")
        if attempt < 3:
            assert outcome == "retry" and t.status == "failed"
            delays.append(t.due_ms - t.updated_ms)
        else:
            assert outcome == "dead" and t.status == "dead"
    # exponential: base * 2^(n-1) times a jitter in [0.5, 1)
    assert 100 <= delays[0] < 200 and 200 <= delays[1] < 400
    assert await _status(store, "child", "grandchild") == ["cancelled", "cancelled"]
    assert (await store.get("child")).reason == "dependency flaky dead"
    assert (await store.get("grandchild")).reason == "dependency child cancelled"
    dlq = await store.client.xrange(keys.dlq)
    assert len(dlq) == 1 and dlq[0][1][b"task"] == b"flaky"
    assert dlq[0][1][b"error"] == b"boom 3"
    # a late submission depending on the dead task ends at once instead of waiting forever
    late = task_spec(NOOP, id="late", depends_on=["flaky"])
    assert await store.submit([(late, None)]) == {"late": "cancelled"}


async def test_stale_failure_report_is_ignored(world) -> None:  # type: ignore[no-untyped-def]
    store, coord = world
    await store.submit([(task_spec(NOOP, id="t"), None)])
    await coord.dispatch_once()
    await store.claim("s", "w1", 1)
    assert await store.fail("t", "1@someone-else", "not mine") == "stale"
    assert (await store.get("t")).status == "running"


async def test_each_claim_has_a_token_of_its_own(world) -> None:  # type: ignore[no-untyped-def]
    # Tokens were attempts@worker, and attempts go down at a hand-back and back to 0 at an
    # operator's retry: the same worker's next claim got the earlier one's token, and that
    # claim's outcome still in flight failed (or released) the new one (found in review).
    store, coord = world
    await store.submit([(task_spec(NOOP, id="t", max_attempts=1), None)])
    await coord.dispatch_once()
    [first] = await store.claim("s", "w1", 1)
    assert first.token == "1@w1"
    assert await store.release({"t": first.token}) == 1  # handed back: attempts 1 -> 0
    await coord.dispatch_once()
    [second] = await store.claim("s", "w1", 1)
    assert second.token != first.token and second.attempts == 1
    assert await store.fail("t", first.token, "the first claim's late error") == "stale"
    assert await store.cancel("t") == "cancelled"
    assert await store.retry(["t"]) == {"t": "retried"}  # attempts back to 0
    await coord.dispatch_once()
    [third] = await store.claim("s", "w1", 1)
    assert len({first.token, second.token, third.token}) == 3
    assert await store.fail("t", second.token, "the second claim's late error") == "stale"
    assert await store.complete("t", third.token, "w1", 1) == "completed"
    assert (await store.get("t")).attempts == 1


async def test_permanent_failure_skips_retries(world) -> None:  # type: ignore[no-untyped-def]
    store, coord = world
    await store.submit([(task_spec(NOOP, id="t", max_attempts=5), None)])
    await coord.dispatch_once()
    (c,) = await store.claim("s", "w1", 1)
    assert await store.fail("t", c.token, "handler not allowed", permanent=True) == "dead"
    assert (await store.get("t")).attempts == 1


async def test_expired_lease_requeues_and_first_result_wins(world) -> None:  # type: ignore[no-untyped-def]
    store, coord = world
    await store.submit([(task_spec(NOOP, id="t", lease_ms=1000, backoff_ms=0), None)])
    await coord.dispatch_once()
    (first,) = await store.claim("s", "w1", 1)

    async def reaped() -> bool:
        retried, _dead = await coord.reap_once()
        return bool(retried == 1)

    await eventually(reaped, what="lease expiry")
    t = await store.get("t")
    assert t.status == "failed" and t.error.startswith("lease expired")
    await eventually(coord.dispatch_once, what="re-dispatch")
    (second,) = await store.claim("s", "w1", 1)
    assert second.attempts == 2 and second.token != first.token
    # the slow first attempt finishes after all: its result is recorded, the rerun's is not
    assert await store.complete("t", first.token, "w1", "slow") == "completed"
    assert await store.complete("t", second.token, "w1", "rerun") == "duplicate"
    assert await store.result("t") == "slow"
    assert await store.extend("w1", {"t": second.token}) == ["t"]  # lease gone


async def test_lease_renewal_keeps_a_long_task(world) -> None:  # type: ignore[no-untyped-def]
    store, coord = world
    await store.submit([(task_spec(NOOP, id="t", lease_ms=1000), None)])
    await coord.dispatch_once()
    (c,) = await store.claim("s", "w1", 1)
    assert await store.extend("w1", {"t": c.token}) == []
    assert await coord.reap_once() == (0, 0)
    assert (await store.get("t")).status == "running"


async def test_cancel_cascades_and_terminal_is_final(world) -> None:  # type: ignore[no-untyped-def]
    store, coord = world
    await store.submit(
        [
            (task_spec(NOOP, id="root"), None),
            (task_spec(NOOP, id="mid", depends_on=["root"]), None),
            (task_spec(NOOP, id="leaf", depends_on=["mid"]), None),
            (task_spec(NOOP, id="other"), None),
        ]
    )
    await coord.dispatch_once()
    assert await store.cancel("root", "no longer needed") == "cancelled"
    assert await _status(store, "root", "mid", "leaf", "other") == [
        "cancelled",
        "cancelled",
        "cancelled",
        "assigned",
    ]
    assert await store.cancel("root") == "ended:cancelled"
    # the cancelled task left its swarm's queue at once (before, only a claim dropped it: a
    # swarm whose host never claims kept every entry), and the swarm slot was freed
    assert await store.client.zrange(store.keys.queue("s"), 0, -1) == [b"other"]
    claimed = await store.claim("s", "w1", 10)
    assert [c.id for c in claimed] == ["other"]
    assert await store.complete("other", claimed[0].token, "w1", 1) == "completed"
    assert await store.cancel("other") == "ended:completed"
    assert (await store.counts())["cancelled"] == 3


async def test_submit_is_all_or_nothing_and_idempotent(world) -> None:  # type: ignore[no-untyped-def]
    store, _ = world
    good = task_spec(NOOP, id="good")
    with pytest.raises(UnknownDependency):
        await store.submit([(good, None), (task_spec(NOOP, id="bad", depends_on=["ghost"]), None)])
    assert await _status(store, "good", "bad") == ["missing", "missing"]
    assert await store.submit([(good, None)]) == {"good": "ready"}
    assert await store.submit([(good, None)]) == {"good": "exists"}  # a retried submit
    with pytest.raises(AlreadyExists):
        await store.submit([(task_spec("multiswarm.demo_tasks:fail_always", id="good"), None)])
    with pytest.raises(BadRequest):
        await store.submit([(task_spec(NOOP, id="self", depends_on=["self"]), None)])
    with pytest.raises(InvalidIdError):
        task_spec(NOOP, id="a:b")
    with pytest.raises(BadRequest):
        task_spec("not-an-import-path")
    with pytest.raises(BadRequest):
        await store.submit([(task_spec(NOOP, id="huge"), "x" * (2 * 1024 * 1024))])


async def test_corrupt_task_record_is_a_typed_error(world, keys: Keys) -> None:  # type: ignore[no-untyped-def]
    from multiswarm.errors import MessageDecodeError

    store, _ = world
    await store.client.hset(keys.tasks, "broken", b"\xff{not json")
    with pytest.raises(MessageDecodeError):
        await store.get("broken")


async def test_one_batch_records_each_outcome_on_its_own(world, keys: Keys) -> None:  # type: ignore[no-untyped-def]
    """finish_tasks (a worker's group commit): one call, one reply per outcome; a problem with
    one task (unknown, never ran, stale token, already completed) leaves the others recorded."""
    store, coord = world
    await store.submit([(task_spec(NOOP, id=i), 1) for i in ("a", "b", "c")])
    await store.submit([(task_spec(NOOP, id="p", depends_on=["c"]), 1)])
    assert await coord.dispatch_once() == 3
    a, b, c = sorted(await store.claim("s", "w1", 3), key=lambda x: x.id)
    assert await store.finish(
        "w1",
        [
            Outcome(a.id, a.token, "ok", b"\xa1a"),
            Outcome("ghost", "1@w1", "ok", b"\xc0"),
            Outcome("p", "1@w1", "ok", b"\xc0"),
            Outcome(b.id, "9@elsewhere", "error", "late report"),
            Outcome(a.id, "2@w1", "ok", b"\xa1b"),
            Outcome(c.id, c.token, "permanent", "bad input"),
        ],
    ) == ["completed", "not_found", "illegal:pending", "stale", "duplicate", "dead"]
    assert await _status(store, "a", "b", "c", "p") == ["completed", "running", "dead", "cancelled"]
    assert await store.result("a") == "a"
    stats = await store.stats()
    assert (stats["completed"], stats["dead"], stats["duplicate_results"]) == (1, 1, 1)
    with pytest.raises(NotFound):
        await store.complete("ghost", "1@w1", "w1", None)


async def test_a_wide_fan_out_is_released_in_bounded_steps(world) -> None:  # type: ignore[no-untyped-def]
    """A completion releases at most one script's budget of waiting tasks (25) itself; the
    leader's dispatch releases the rest, so no script walks 40,000 dependents at once."""
    store, coord = world
    await store.submit([(task_spec(NOOP, id="root"), 1)])
    await store.submit([(task_spec(NOOP, id=f"k{i}", depends_on=["root"]), 1) for i in range(250)])
    assert await coord.dispatch_once() == 1
    (c,) = await store.claim("s", "w1", 1)
    assert await store.complete(c.id, c.token, "w1", None) == "completed"
    counts = await store.counts()
    assert (counts["ready"], counts["pending"]) == (25, 225)
    await coord.dispatch_once()  # one round: as many calls as it takes
    counts = await store.counts()
    assert counts["pending"] == 0 and counts["ready"] + counts["assigned"] == 250
    assert await store.client.zcard(store.keys.task_keys.waiting) == 0


async def test_a_wide_cascade_ends_every_dependent_in_bounded_steps(world) -> None:  # type: ignore[no-untyped-def]
    store, coord = world
    await store.submit([(task_spec(NOOP, id="root"), 1)])
    kids = [(task_spec(NOOP, id=f"k{i}", depends_on=["root"]), 1) for i in range(150)]
    grandkids = [(task_spec(NOOP, id=f"g{i}", depends_on=[f"k{i}"]), 1) for i in range(150)]
    await store.submit(kids + grandkids)
    assert await coord.dispatch_once() == 1
    (c,) = await store.claim("s", "w1", 1)
    assert await store.fail(c.id, c.token, "bad input", permanent=True) == "dead"
    assert (await store.counts())["cancelled"] == 25  # this script's budget
    await coord.dispatch_once()
    counts = await store.counts()
    assert (counts["cancelled"], counts["pending"], counts["dead"]) == (300, 0, 1)
    assert (await store.get("k7")).reason == "dependency root dead"
    assert (await store.get("g7")).reason == "dependency k7 cancelled"
    assert await store.client.zcard(store.keys.task_keys.waiting) == 0
