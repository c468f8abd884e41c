"""The region pool: kernels against the plain-Python reference, invariants, policies, errors."""

from __future__ import annotations

from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multiswarm.kernels.errors import (
    AgentOverLimit,
    KernelInputError,
    NotOwner,
    PoolError,
    PoolOutOfMemory,
    UnknownAllocation,
)
from multiswarm.kernels.memory import (
    DEFAULT_POOL_BYTES,
    DEFAULT_REGION_BYTES,
    Allocation,
    RegionPool,
)

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

REGION = 64
PATTERN = bytes(i % 251 for i in range(3 * REGION))
POLICIES = ["lru", "lfu", "fifo", "ttl", "none"]


class FakeClock:
    """Seconds that move only when a test says so (ties are part of what is tested)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_pool(
    clock: FakeClock, backend: str = "numba", n_regions: int = 16, **kw: Any
) -> RegionPool:
    return RegionPool(n_regions * REGION, REGION, clock=clock, backend=backend, **kw)  # type: ignore[arg-type]


# --- operation sequences, run on both backends --------------------------------------------------

alloc_op = st.tuples(
    st.just("alloc"),
    st.integers(0, 4),
    st.integers(1, 4 * REGION),
    st.sampled_from([None, None, 0.0, 1.0, 5.0]),
    st.sampled_from([False, False, False, False, True]),
)
# Allocation is listed thrice so that pools fill up and evictions happen often.
ops = st.one_of(
    alloc_op,
    alloc_op,
    alloc_op,
    st.tuples(st.just("free"), st.integers(0, 30)),
    st.tuples(st.just("touch"), st.integers(0, 30)),
    st.tuples(st.just("transfer"), st.integers(0, 30), st.integers(0, 4), st.booleans()),
    st.tuples(st.just("gc"), st.frozensets(st.integers(0, 4), max_size=2)),
    st.tuples(st.just("expire")),
    st.tuples(st.just("tick"), st.sampled_from([0.0, 0.5, 1.0, 3.0])),
)
# Mostly allocations into a full pool: exercises eviction of several victims at once.
pressure_ops = st.one_of(
    alloc_op,
    alloc_op,
    alloc_op,
    alloc_op,
    st.tuples(st.just("touch"), st.integers(0, 30)),
    st.tuples(st.just("touch"), st.integers(0, 30)),
    st.tuples(st.just("free"), st.integers(0, 30)),
    st.tuples(st.just("tick"), st.sampled_from([0.0, 1.0])),
)


def apply(pool: RegionPool, clock: FakeClock, op: tuple[Any, ...]) -> Any:
    """Run one operation; return its result or the type of the error it raised."""
    live = pool.allocations()
    try:
        if op[0] == "alloc":
            return pool.allocate(op[1], op[2], ttl_s=op[3], pinned=op[4])
        if op[0] == "tick":
            clock.now += op[1]
            return None
        if op[0] == "gc":
            return pool.gc(sorted(op[1]))
        if op[0] == "expire":
            return pool.expire()
        if not live:
            return None
        target = live[op[1] % len(live)]
        if op[0] == "free":
            return pool.free(target)
        if op[0] == "touch":
            return pool.touch(target)
        # transfer, sometimes naming the wrong current owner
        source = target.agent + 1 if op[3] else None
        return pool.transfer(target, op[2], from_agent=source)
    except PoolError as e:
        return type(e)


def check_invariants(pool: RegionPool, limits: dict[int, int]) -> None:
    t = pool.table()
    expected_owner = np.full(pool.n_regions, -1)
    last_end = 0
    for a in pool.allocations():
        # contiguous, non-overlapping, and every region owned once
        assert a.start_region >= last_end
        last_end = a.start_region + a.n_regions
        span = slice(a.start_region, last_end)
        assert (expected_owner[span] == -1).all()
        expected_owner[span] = a.agent
        assert (t.alloc_id[span] == a.id).all() and (t.start[span] == a.start_region).all()
        assert t.n_regions[a.start_region] == a.n_regions
        assert 0 < a.nbytes <= a.n_regions * REGION
        assert a.offset == a.start_region * REGION
    np.testing.assert_array_equal(t.owner, expected_owner)
    assert ((t.owner == -1) == (t.alloc_id == -1)).all()
    usage = pool.usage()
    assert usage.used_bytes + usage.free_bytes == usage.total_bytes
    for agent, limit in limits.items():
        held = usage.per_agent.get(agent)
        assert held is None or held.regions <= limit


def check_eviction(pool_before: dict[str, Any], new: Allocation, evicted: list[Allocation]) -> None:
    """Victims came in policy order, as few as possible, all inside the new allocation."""
    order: list[Allocation] = pool_before["order"]
    free: np.ndarray = pool_before["free"]
    new_span = set(range(new.start_region, new.start_region + new.n_regions))
    for v in evicted:
        assert new_span & set(range(v.start_region, v.start_region + v.n_regions))
    ranks = [[o.id for o in order].index(v.id) for v in evicted]
    assert ranks == sorted(ranks)

    def fits_after(k: int) -> bool:
        vacant = free.copy()
        for o in order[:k]:
            vacant[o.start_region : o.start_region + o.n_regions] = True
        run = best = 0
        for x in vacant:
            run = run + 1 if x else 0
            best = max(best, run)
        return best >= new.n_regions

    last = ranks[-1]
    assert fits_after(last + 1) and not fits_after(last)


@st.composite
def scenarios(draw: st.DrawFn, *, pressure: bool = False) -> dict[str, Any]:
    return {
        "policy": draw(st.sampled_from(POLICIES[:4] if pressure else POLICIES)),
        "n_regions": draw(st.sampled_from([4, 8, 12])),
        "limits": draw(st.dictionaries(st.integers(0, 4), st.integers(0, 10), max_size=2)),
        "ops": draw(st.lists(pressure_ops if pressure else ops, min_size=5, max_size=40)),
    }


@SETTINGS
@given(st.booleans().flatmap(lambda pressure: scenarios(pressure=pressure)))
def test_kernels_match_reference_and_keep_invariants(scenario: dict[str, Any]) -> None:
    run_scenario(scenario)


def random_scenario(seed: int) -> dict[str, Any]:
    """A long, allocation-heavy sequence: the pool stays full and evicts several at once."""
    rng = np.random.default_rng(seed)
    kinds = ["alloc"] * 5 + ["touch"] * 3 + ["free", "tick", "transfer", "gc", "expire"]
    seq: list[tuple[Any, ...]] = []
    for kind in rng.choice(kinds, 150).tolist():
        agent, index = int(rng.integers(0, 5)), int(rng.integers(0, 30))
        if kind == "alloc":
            ttl = [None, None, 1.0, 5.0][int(rng.integers(0, 4))]
            size = int(rng.integers(1, 5 * REGION))
            seq.append((kind, agent, size, ttl, bool(rng.random() < 0.1)))
        elif kind == "tick":
            seq.append((kind, float(rng.choice([0.0, 1.0, 2.0]))))
        elif kind == "transfer":
            seq.append((kind, index, agent, bool(rng.random() < 0.2)))
        elif kind == "gc":
            seq.append((kind, frozenset([agent]) if rng.random() < 0.3 else frozenset()))
        elif kind == "expire":
            seq.append((kind,))
        else:
            seq.append((kind, index))
    return {
        "policy": POLICIES[seed % len(POLICIES)],
        "n_regions": [8, 16, 24][seed % 3],
        "limits": {0: 6} if seed % 2 else {},
        "ops": seq,
    }


@settings(SETTINGS, max_examples=25)
@given(st.integers(0, 10_000))
def test_long_random_sequences_match_reference(seed: int) -> None:
    run_scenario(random_scenario(seed))


def run_scenario(scenario: dict[str, Any]) -> None:
    clocks = FakeClock(), FakeClock()
    pools = [
        make_pool(clk, backend, scenario["n_regions"], policy=scenario["policy"])
        for clk, backend in zip(clocks, ["numba", "python"], strict=True)
    ]
    for pool in pools:
        for agent, limit in scenario["limits"].items():
            pool.set_limit(agent, max_regions=limit)
    kernel, reference = pools
    for op in scenario["ops"]:
        before = {
            "order": kernel.eviction_order(),
            "free": kernel.table().owner == -1,
            "n_evictions": len(kernel.evictions),
        }
        got = apply(kernel, clocks[0], op)
        want = apply(reference, clocks[1], op)
        assert got == want, op
        for a, b in zip(kernel.table(), reference.table(), strict=True):
            np.testing.assert_array_equal(a, b)
        assert list(kernel.evictions) == list(reference.evictions)
        check_invariants(kernel, scenario["limits"])
        if isinstance(got, Allocation) and len(kernel.evictions) > before["n_evictions"]:
            evicted = [e.allocation for e in list(kernel.evictions)[before["n_evictions"] :]]
            check_eviction(before, got, evicted)


# --- eviction policies, on hand-made examples ---------------------------------------------------


def full_pool(policy: str, clock: FakeClock) -> tuple[RegionPool, list[Allocation]]:
    """Four one-region allocations a0..a3 made at times 100..103, filling a four-region pool."""
    pool = make_pool(clock, n_regions=4, policy=policy)
    allocs = []
    for i in range(4):
        allocs.append(pool.allocate(i, REGION))
        clock.now += 1
    return pool, allocs


def evicted_ids(pool: RegionPool) -> list[int]:
    return [e.allocation.id for e in pool.evictions]


def test_lru_evicts_least_recently_touched() -> None:
    clock = FakeClock()
    pool, a = full_pool("lru", clock)
    pool.touch(a[0])
    clock.now += 1
    pool.view(a[2])  # a view is an access too
    pool.allocate(9, REGION)
    pool.allocate(9, REGION)
    assert evicted_ids(pool) == [a[1].id, a[3].id]


def test_lfu_evicts_least_often_touched_then_least_recent() -> None:
    clock = FakeClock()
    pool, a = full_pool("lfu", clock)
    for x in (a[0], a[0], a[1], a[3]):
        pool.touch(x)
        clock.now += 1
    assert [x.id for x in pool.eviction_order()] == [a[2].id, a[1].id, a[3].id, a[0].id]
    pool.allocate(9, REGION)
    assert evicted_ids(pool) == [a[2].id]


def test_fifo_evicts_oldest_regardless_of_use() -> None:
    clock = FakeClock()
    pool, a = full_pool("fifo", clock)
    pool.touch(a[0])
    pool.allocate(9, REGION)
    assert evicted_ids(pool) == [a[0].id]


def test_ttl_evicts_nearest_deadline_first_and_expire_drops_expired() -> None:
    clock = FakeClock()
    pool = make_pool(clock, n_regions=5, policy="ttl")
    made = []
    for ttl_s in (50.0, None, 10.0, 9.0, None):  # deadlines 150, inf, 112, 112, inf
        made.append(pool.allocate(1, REGION, ttl_s=ttl_s))
        clock.now += 1
    x, y, z, w, v = made
    # Equal deadlines and no deadline both fall back to insertion order.
    assert pool.eviction_order() == [z, w, x, y, v]
    pool.allocate(2, REGION)
    assert evicted_ids(pool) == [z.id]
    clock.now = 140.0
    assert pool.expire() == [w]
    assert pool.allocations()[:2] == [x, y]


def test_eviction_takes_only_what_the_window_needs() -> None:
    clock = FakeClock()
    pool, a = full_pool("lru", clock)
    for x in (a[0], a[2], a[1], a[3]):  # LRU order now a0, a2, a1, a3
        pool.touch(x)
        clock.now += 1
    new = pool.allocate(9, 2 * REGION)
    # a0 then a2 freed on paper open no run of two; a1 does (regions 0-2): only a0 and a1 go.
    assert evicted_ids(pool) == [a[0].id, a[1].id]
    assert new.start_region == 0
    assert a[2] in pool.allocations()


def test_pinned_allocations_are_never_evicted() -> None:
    clock = FakeClock()
    pool = make_pool(clock, n_regions=2)
    pinned = pool.allocate(1, REGION, pinned=True)
    other = pool.allocate(2, REGION)
    with pytest.raises(PoolOutOfMemory):
        pool.allocate(3, 2 * REGION)
    assert pool.allocations() == [pinned, other] and not pool.evictions
    pool.allocate(3, REGION)
    assert evicted_ids(pool) == [other.id]


def test_policy_none_refuses() -> None:
    pool = make_pool(FakeClock(), n_regions=2, policy="none")
    pool.allocate(1, 2 * REGION)
    with pytest.raises(PoolOutOfMemory) as info:
        pool.allocate(2, 1)
    assert isinstance(info.value, MemoryError)


# --- ownership, limits, gc, bytes ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numba", "python"])
def test_transfer_keeps_bytes_in_place(backend: str) -> None:
    with make_pool(FakeClock(), backend) as pool:
        pool.allocate(1, 100)
        a = pool.allocate(1, 3 * REGION)
        pool.view(a)[:] = PATTERN
        address = np.frombuffer(pool.view(a), np.uint8).ctypes.data
        b = pool.transfer(a, 2)
        assert (b.id, b.offset, b.start_region, b.agent) == (a.id, a.offset, a.start_region, 2)
        assert bytes(pool.view(b)) == PATTERN
        assert np.frombuffer(pool.view(b), np.uint8).ctypes.data == address
        assert pool.usage().per_agent[2].regions == 3
        with pytest.raises(NotOwner):
            pool.transfer(a, 3)  # the old handle names agent 1, which no longer owns it
        with pytest.raises(NotOwner):
            pool.transfer(b, 3, from_agent=1)


def test_limits_in_regions_and_bytes() -> None:
    pool = make_pool(FakeClock())
    pool.set_limit(1, max_bytes=3 * REGION + REGION // 2)  # rounds down to 3 regions
    pool.set_limit(2, max_regions=1)
    assert pool.limit(1) == 3
    pool.allocate(1, 2 * REGION)
    with pytest.raises(AgentOverLimit) as info:
        pool.allocate(1, REGION + 1)
    assert isinstance(info.value, MemoryError)
    pool.allocate(1, REGION)
    moved = pool.allocate(3, REGION)
    pool.transfer(moved, 2)
    with pytest.raises(AgentOverLimit):
        pool.transfer(pool.allocate(3, 1), 2)
    pool.set_limit(1)
    assert pool.limit(1) is None
    pool.allocate(1, 5 * REGION)


def test_gc_frees_only_dead_agents() -> None:
    pool = make_pool(FakeClock())
    keep = pool.allocate(1, REGION)
    gone = [pool.allocate(2, REGION), pool.allocate(3, 2 * REGION, pinned=True)]
    assert pool.gc([3, 2, 7]) == gone
    assert pool.allocations() == [keep]
    with pytest.raises(UnknownAllocation):
        pool.view(gone[0])


def test_free_twice_and_foreign_handles_raise() -> None:
    pool = make_pool(FakeClock())
    a = pool.allocate(1, 10)
    pool.free(a.id)
    for call in (pool.free, pool.touch, pool.view):
        with pytest.raises(UnknownAllocation):
            call(a)
    b = pool.allocate(1, 10)
    forged = Allocation(b.id, 1, b.start_region + 1, 1, 10, 0)
    with pytest.raises(UnknownAllocation) as info:
        pool.free(forged)
    assert isinstance(info.value, ValueError)


def test_usage_reports_bytes_and_agents() -> None:
    pool = make_pool(FakeClock(), n_regions=8)
    pool.allocate(1, 10)
    pool.allocate(2, 2 * REGION + 1)
    pool.allocate(1, REGION)
    u = pool.usage()
    assert (u.total_bytes, u.used_bytes, u.free_bytes) == (8 * REGION, 5 * REGION, 3 * REGION)
    assert u.requested_bytes == 10 + 2 * REGION + 1 + REGION
    assert u.largest_free_bytes == 3 * REGION
    assert u.per_agent[1].regions == 2 and u.per_agent[1].allocations == 2
    assert u.per_agent[2].requested_bytes == 2 * REGION + 1


def test_default_pool_and_shared_memory() -> None:
    with RegionPool(shared=True) as pool:
        assert pool.total_bytes == DEFAULT_POOL_BYTES == 28 * 1024 * 1024
        assert pool.n_regions == DEFAULT_POOL_BYTES // DEFAULT_REGION_BYTES == 448
        a = pool.allocate(5, 1000)
        view = pool.view(a)
        view[:5] = b"hello"
        view.release()
        name = pool.shm_name
        assert name is not None
        other = SharedMemory(name=name)
        try:
            assert other.buf is not None
            assert bytes(other.buf[a.offset : a.offset + 5]) == b"hello"
        finally:
            other.close()
    with pytest.raises(FileNotFoundError):
        SharedMemory(name=name)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"total_bytes": 1000, "region_bytes": 64}, "multiple of region_bytes"),
        ({"region_bytes": 0}, "region_bytes must be a positive integer"),
        ({"policy": "random"}, "unknown policy"),
        ({"name": "x"}, "only meaningful with shared"),
        ({"backend": "cuda"}, "unknown backend"),
    ],
)
def test_bad_pool_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(KernelInputError, match=match):
        RegionPool(**kwargs)


def test_bad_request_arguments() -> None:
    pool = make_pool(FakeClock())
    with pytest.raises(KernelInputError):
        pool.allocate(1, 0)
    with pytest.raises(KernelInputError):
        pool.allocate(-1, 10)
    with pytest.raises(KernelInputError):
        pool.allocate(1, 10, ttl_s=-1.0)
    with pytest.raises(PoolOutOfMemory):
        pool.allocate(1, 17 * REGION)


@pytest.mark.parametrize("backend", ["numba", "python"])
def test_an_agent_id_past_the_region_table_s_range_is_refused(backend: str) -> None:
    """Owners are int64 in the region table and a negative one means free: agent 2**63 wrapped
    to one, so the next allocation got the same bytes (Numba), or an eviction was half done
    (Python); 2**64 raised a bare OverflowError (found in review)."""
    pool = make_pool(FakeClock(), backend=backend, n_regions=4)
    held = pool.allocate(1, 10)
    before = pool.table()
    for agent in (2**63, 2**64):
        with pytest.raises(KernelInputError, match="from 0 to 2"):
            pool.allocate(agent, 10)
        with pytest.raises(KernelInputError):
            pool.transfer(held, to_agent=agent)
        with pytest.raises(KernelInputError):
            pool.set_limit(agent, max_regions=1)
    after = pool.table()
    assert all((a == b).all() for a, b in zip(after, before))
    assert pool.allocate(0, 10).offset != held.offset
