"""What a swarm can run is part of its worker's advert: two real workers whose swarms share a
capability, only one of which registers the handler (``--import``); every task completes on
that one, none is burnt on the other, and a task no swarm can run waits saying why."""

from __future__ import annotations

import json
import re
from pathlib import Path

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import eventually

WHERE = "tests.handlers.registered:where"
IMPORT = ["--import", "tests.handlers.registered"]


def _group(settings: Settings, tmp_path: Path) -> ProcessGroup:
    group = ProcessGroup(
        settings.replace(heartbeat_timeout_ms=1500, lease_ms=2000), tmp_path, verbose=True
    )
    group.spawn("registry", ["registry"])
    group.spawn("coordinator", ["coordinator", "--id", "coord", "--strategy", "least_loaded"])
    return group


async def test_tasks_go_only_to_the_swarm_whose_worker_registers_their_handler(
    settings: Settings, tmp_path: Path
) -> None:
    group = _group(settings, tmp_path)
    group.spawn("w1", ["worker", "--id", "w1", "--swarm", "sa:work:2", *IMPORT])
    group.spawn("w2", ["worker", "--id", "w2", "--swarm", "sb:work:2"])
    store = TaskStore(Scripts(connect(settings)), Keys(settings.namespace))
    try:
        n = 16
        await store.submit(
            [(task_spec(WHERE, capabilities=["work"], id=f"t{i}"), i) for i in range(n)]
            + [(task_spec("tests.handlers:renamed", capabilities=["work"], id="named"), None)]
            + [(task_spec("multiswarm.demo_tasks:noop", capabilities=["work"], id="own"), 1)]
        )

        async def done() -> bool:
            return (await store.counts())["completed"] == n + 2

        await eventually(done, timeout_s=60, what="every task completed")
        for i in range(n):
            t = await store.get(f"t{i}")
            # w1 hosts sa only; completed_by is "<attempt>@<worker>"
            assert (t.completed_by, t.attempts) == ("1@w1", 1), t
        assert (await store.get("named")).completed_by == "1@w1"
        assert await store.result("named") == "renamed"
        # the package's own handlers are registered on every worker
        assert (await store.get("own")).status == "completed"
        # one INFO line per finished run: what ran where, which attempt, how long, how it ended
        log = (tmp_path / "w1.log").read_text()
        line = re.search(r"task t3 handler=(\S+) swarm=(\S+) agent=(\S+) attempt=1 run=\S+s "
                         r"outcome=(\S+)", log)  # fmt: skip
        assert line is not None, log[-2000:]
        assert line.groups() == (WHERE, "sa", line.group(3), "completed")
        assert line.group(3).startswith("sa.a")
    finally:
        await store.client.aclose()
        group.stop_all()


async def test_a_refusal_on_a_stale_advert_hands_the_task_back_uncounted(
    settings: Settings, tmp_path: Path
) -> None:
    group = _group(settings, tmp_path)
    group.spawn("w2", ["worker", "--id", "w2", "--swarm", "sb:work:2"])
    keys = Keys(settings.namespace)
    store = TaskStore(Scripts(connect(settings)), keys)
    try:

        async def hosted() -> bool:
            return await store.client.hget(keys.swarms, "sb") is not None

        await eventually(hosted, timeout_s=30, what="sb hosted")
        # a stale advert: the record says sb's worker may run anything (an older worker's)
        record = json.loads(await store.client.hget(keys.swarms, "sb") or "{}")
        assert record["handlers"].split(",")[0].startswith("multiswarm.demo_tasks:")
        del record["handlers"]
        await store.client.hset(keys.swarms, "sb", json.dumps(record))
        await store.submit([(task_spec(WHERE, capabilities=["work"], id="t"), None)])

        async def waits() -> bool:
            t = await store.get("t")
            return t.status == "ready" and "may run handler" in t.reason

        # w2 refused it, advertised what it really runs, and the leader parked the task
        await eventually(waits, timeout_s=30, what="the task parked with its reason")
        t = await store.get("t")
        assert (t.attempts, t.error) == (0, ""), t
        assert t.reason.startswith(f"no swarm with capabilities [work] may run handler {WHERE}")
        group.spawn("w1", ["worker", "--id", "w1", "--swarm", "sa:work:2", *IMPORT])

        async def completed() -> bool:
            return (await store.get("t")).status == "completed"

        await eventually(completed, timeout_s=30, what="the task completed on w1")
        t = await store.get("t")
        assert (t.completed_by, t.attempts) == ("1@w1", 1), t
    finally:
        await store.client.aclose()
        group.stop_all()
