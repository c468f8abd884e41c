"""CPU time of processes, read from ``/proc`` (Linux): of one pid (bench_agents, bench_idle), and
of the processes a bench_peers system runs.

Every process a run starts carries the run's mark in its environment (bench_peers ``RUN_MARK``;
grandchildren inherit it), and systems run one at a time, so the marked processes alive in a
window are the system's under test. Each is labelled by its command line: multiswarm's roles by
name (``run registry``, ``run coordinator``, ``run worker``), the agents as ``agents`` (the fork
server and the processes forked from it share its command line), multiprocessing's resource
tracker as such, every peer's processes as ``workers``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

#: Clock ticks per second of ``/proc/<pid>/stat`` times.
TICKS = os.sysconf("SC_CLK_TCK")

#: pid -> (label, CPU seconds: user + system)
Snapshot = dict[int, tuple[str, float]]


def cpu_s(pid: int) -> float:
    """User + system CPU of process ``pid`` (every thread), seconds. Raises OSError once it is
    gone."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime: fields 14 and 15 of proc(5), 12 and 13 after the name
    return (int(stat[11]) + int(stat[12])) / TICKS


def marked(mark: bytes) -> list[int]:
    """Pids (not this process) whose environment holds ``mark`` (``NAME=value``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if mark in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


def label(cmdline: list[str]) -> str:
    """What a process is, from its arguments (see the module docstring)."""
    if "multiswarm" in cmdline and "run" in cmdline:
        at = cmdline.index("run")
        return cmdline[at + 1] if at + 1 < len(cmdline) else "multiswarm"
    if any("forkserver" in a for a in cmdline):
        return "agents"
    if any("resource_tracker" in a for a in cmdline):
        return "resource tracker"
    return "workers"


def snapshot(pids: list[int]) -> Snapshot:
    """Label and CPU seconds of each of ``pids`` still alive."""
    out: Snapshot = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            args = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
            out[pid] = (label(args), cpu_s(pid))
    return out


def per_task(before: Snapshot, after: Snapshot, n: int) -> dict[str, float]:
    """CPU µs per task of each label over the window, and ``total``: processes seen at its end
    (one started inside it counts from zero; one that ended inside it is missed)."""
    sums: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        sums[name] = sums.get(name, 0.0) + cpu - before.get(pid, (name, 0.0))[1]
    out = {name: round(1e6 * s / n, 1) for name, s in sorted(sums.items())}
    out["total"] = round(1e6 * sum(sums.values()) / n, 1)
    return out
