"""The facade's partition choice and merged views, as pure functions (decision 47)."""

from __future__ import annotations

import msgspec
import pytest

from multiswarm import BadRequest, LeaderInfo, PartitionLeader
from multiswarm.partition_routes import Routes, choose_partition, covering
from multiswarm.partition_views import (
    combine_outcomes,
    merge_leaders,
    split_capacity,
    sum_counts,
    vacant,
)


def test_the_choice_prefers_covering_partitions_then_the_smallest_backlog() -> None:
    caps = [{"*": 1, "parse": 1}, {"*": 2, "parse": 1, "embed": 1}, {}]
    assert covering(["parse", "embed"], caps) == [1]
    assert covering([], caps) == [0, 1]  # any swarm takes a task needing nothing
    assert choose_partition(["parse", "embed"], caps, [0, 50, 0], 0) == 1
    assert choose_partition(["parse"], caps, [3, 2, 0], 0) == 1
    # nobody offers it: by backlog over all (the task waits, as with one partition)
    assert choose_partition(["gpu"], caps, [3, 2, 1], 0) == 2
    assert [choose_partition([], caps, [1, 1, 0], t) for t in range(4)] == [0, 1, 0, 1]


def test_routes_count_submissions_and_forget_the_oldest_tasks() -> None:
    routes = Routes(3, task_routes=2)
    routes.set_backlog([0, 0, 0])
    picks = []
    for _ in range(6):
        k = routes.choose([], [{}, {}, {}], routes.fresh_backlog() or [])
        routes.submitted(k, 1)
        picks.append(k)
    assert sorted(picks) == [0, 0, 1, 1, 2, 2]
    routes.remember_tasks(["a", "b"], 1)
    assert routes.task("a") == 1  # now the most recent
    routes.remember_tasks(["c"], 2)
    assert (routes.task("a"), routes.task("b"), routes.task("c")) == (1, None, 2)


def test_swarm_routes_are_bounded() -> None:
    # a long-lived facade met every swarm ever made: the map grew without end (found in review)
    routes = Routes(3, swarm_routes=2)
    for i, sid in enumerate(["s0", "s1", "s2"]):
        routes.swarms[sid] = i
    assert dict(routes.swarms) == {"s1": 1, "s2": 2}
    routes.swarms["s1"] = 0  # set again: the most recent
    routes.swarms["s3"] = 2
    assert dict(routes.swarms) == {"s1": 0, "s3": 2}
    assert routes.swarms.pop("s1") == 0 and routes.swarms.get("s9") is None


def test_capacity_splits_over_allocations() -> None:
    assert split_capacity(10, [0, 0, 0]) == [4, 3, 3]
    assert split_capacity(10, [6, 0, 0]) == [8, 1, 1]
    with pytest.raises(BadRequest):
        split_capacity(5, [3, 3, 0])
    assert combine_outcomes(["unchanged", "resized", "unchanged"]) == "resized"
    assert combine_outcomes(["unchanged"] * 3) == "unchanged"


def test_leaders_merge_and_one_partition_keeps_its_json() -> None:
    one = LeaderInfo(holder="c1", host="h", pid=1, epoch=3, lease_ms_left=900)
    assert merge_leaders([one]) is one
    assert "partitions" not in msgspec.json.decode(msgspec.json.encode(one))
    assert merge_leaders([None, None]) is None
    merged = merge_leaders([None, one, None])
    assert merged is not None and merged.holder == "c1"
    assert merged.partitions[1] == PartitionLeader(
        partition=1, holder="c1", epoch=3, lease_ms_left=900
    )
    assert vacant(merged, 3) == [0, 2] and vacant(None, 2) == [0, 1]
    assert sum_counts([{"a": 1, "b": 2}, {"b": 3, "c": 1}]) == {"a": 1, "b": 5, "c": 1}
