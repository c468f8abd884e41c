"""LeaseQuota: loops trying for leases at the same moment cannot together pass the cap."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from multiswarm.coordinator_process import CoordinatorProcess, LeaseQuota


def process(leading: bool) -> CoordinatorProcess:
    fake: Any = SimpleNamespace(c=SimpleNamespace(election=SimpleNamespace(is_leader=leading)))
    return cast(CoordinatorProcess, fake)


def test_reservations_count_against_the_cap_with_the_leases_held() -> None:
    quota = LeaseQuota(3)
    quota.processes += [process(True), process(False), process(False), process(False)]
    assert quota.held() == 1
    assert quota.reserve() and quota.reserve()  # two tries in flight: 1 held + 2 = cap
    assert not quota.reserve()
    quota.unreserve()  # a try lost
    assert quota.reserve()
    quota.unreserve()
    quota.unreserve()
    quota.cap = 1  # another coordinator joined: at the cap with the one held
    assert not quota.reserve()
