"""benchmarks/proc_cpu.py: which processes a bench_peers system runs, what each is, its CPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "proc_cpu.py"


@pytest.fixture(scope="module")
def proc_cpu() -> ModuleType:
    spec = importlib.util.spec_from_file_location("proc_cpu", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (["python3", "-m", "multiswarm", "--namespace", "p1", "run", "coordinator"], "coordinator"),
        (["python3", "-m", "multiswarm", "run", "worker", "--id", "w1"], "worker"),
        (["python3", "-B", "-c", "from multiprocessing.forkserver import main; main(3)"], "agents"),
        (
            ["python3", "-c", "from multiprocessing.resource_tracker import main;main(7)"],
            "resource tracker",
        ),
        (["python3", "-m", "dramatiq", "peer_tasks:dramatiq_setup"], "workers"),
        (["saq", "peer_tasks.saq_settings"], "workers"),
    ],
)
def test_each_process_is_labelled_by_its_command_line(
    proc_cpu: ModuleType, cmdline: list[str], expected: str
) -> None:
    assert proc_cpu.label(cmdline) == expected


def test_marked_finds_exactly_the_processes_carrying_the_mark(proc_cpu: ModuleType) -> None:
    mark = f"PEER_CPU_TEST={uuid.uuid4().hex}"
    name, value = mark.split("=")
    # each burns 0.25 s of CPU (its own clock), then says so and waits to be killed
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.25: pass\n"
    burn += "print('burnt', flush=True)\ntime.sleep(30)"
    env = {**os.environ, name: value}
    children = [
        subprocess.Popen([sys.executable, "-c", burn], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for c in children:
            assert c.stdout is not None and c.stdout.readline() == "burnt\n"
        pids = proc_cpu.marked(mark.encode())
        assert sorted(pids) == sorted(c.pid for c in children)
        snap = proc_cpu.snapshot(pids)
        assert {label for label, _ in snap.values()} == {"workers"}
        assert all(cpu >= 0.2 for _, cpu in snap.values()), snap
        # a window that saw nothing before: everything since counts; total is the sum
        split = proc_cpu.per_task({}, snap, 1000)
        assert split["workers"] == split["total"] >= 2 * 0.2 * 1e6 / 1000
        # the same snapshot as before and after: no CPU in the window
        assert proc_cpu.per_task(snap, snap, 1000) == {"workers": 0.0, "total": 0.0}
    finally:
        procs: list[subprocess.Popen[Any]] = [*children, other]
        for p in procs:
            p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()
