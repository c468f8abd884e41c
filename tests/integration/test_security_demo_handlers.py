"""Whoever can write to Redis picks the handler and the payload of a task. The demo's map
handlers read the file their payload names, and they are allowed on every worker by default
(prefix ``multiswarm.``): on a worker not started by the demo they must read nothing, and a
demo's workers read only ``.py`` files under its corpus (``..`` and linked folders cannot lead
out of it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from multiswarm import demo_tasks
from multiswarm.agents import TaskContext
from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.errors import HandlerError
from multiswarm.keys import Keys
from multiswarm.launcher import ProcessGroup
from multiswarm.scripts import Scripts
from multiswarm.tasks import TaskStore, task_spec

from .helpers import eventually

pytestmark = pytest.mark.slow

SECRET = "hunter2xyz"


async def test_a_worker_outside_the_demo_reads_no_file_for_a_demo_handler(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(demo_tasks.CORPUS_ENV, raising=False)
    secret = tmp_path / "app.env"
    secret.write_text(f"API_TOKEN = {SECRET}\n")
    group = ProcessGroup(settings.replace(heartbeat_timeout_ms=1500, lease_ms=2000), tmp_path)
    group.spawn("registry", ["registry"])
    group.spawn("coordinator", ["coordinator", "--id", "coord"])
    group.spawn("w1", ["worker", "--id", "w1", "--swarm", "s:parse:1"])
    store = TaskStore(Scripts(connect(settings)), Keys(settings.namespace))
    try:
        await store.submit(
            [
                (
                    task_spec(
                        "multiswarm.demo_tasks:parse_file",
                        id="steal",
                        capabilities=["parse"],
                        max_attempts=1,
                    ),
                    {"path": str(secret)},
                )
            ]
        )

        async def ended() -> bool:
            return (await store.get("steal")).status in ("completed", "dead")

        await eventually(ended, timeout_s=90, what="the task to end")
        task = await store.get("steal")
        assert task.status == "dead", await store.result("steal")
        assert demo_tasks.CORPUS_ENV in task.error + task.reason
        assert SECRET not in task.error + task.reason
    finally:
        await store.client.aclose()
        group.stop_all()


def test_demo_handlers_read_only_python_files_under_the_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.py").write_text("alpha = 1\n")
    (corpus / "notes.txt").write_text(f"{SECRET}\n")
    (tmp_path / "outside.py").write_text(f"{SECRET} = 1\n")
    (corpus / "up").symlink_to(tmp_path, target_is_directory=True)
    monkeypatch.setenv(demo_tasks.CORPUS_ENV, str(corpus))
    ctx = TaskContext(task_id="t", attempt=1, dependencies={})
    assert demo_tasks.parse_file({"path": str(corpus / "a.py")}, ctx)["counts"] == {"alpha": 1}
    for path in (
        corpus / "notes.txt",
        tmp_path / "outside.py",
        corpus / "../outside.py",
        corpus / "up" / "outside.py",
        Path("/etc/passwd"),
    ):
        for handler in (demo_tasks.parse_file, demo_tasks.compress_file):
            with pytest.raises(HandlerError):
                handler({"path": str(path)}, ctx)
