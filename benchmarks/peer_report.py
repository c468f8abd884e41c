"""Redis cost accounting and the RESULTS.md table of benchmarks/bench_peers.py."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).resolve().parent.parent / "scripts" / "lua"
#: Commands that run multiswarm's scripts (FCALL; the handler's script goes by EVAL).
SCRIPT_COMMANDS = ("evalsha", "evalsha_ro", "fcall", "fcall_ro")
#: The driver's own commands in the measured window, not the system's.
DRIVER_COMMANDS = ("info", "time", "blpop", "set", "hello", "client|setinfo")

LABELS = {
    "multiswarm": "multiswarm {v} (registry + coordinator + worker, 2 agents x concurrency 8)",
    "dramatiq": "Dramatiq {v}, 2 procs x 8 threads, results stored",
    "saq": "SAQ {v}, 2 procs",
    "celery": "Celery {v}, solo pool, 2 procs",
    "rq": "RQ {v}, SimpleWorker, 2 procs",
}


def cpu_seconds(info: Mapping[str, Any]) -> float:
    """Server CPU time (main thread and I/O threads, user + system), seconds."""
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def lua_commands() -> set[str]:
    """Redis commands called inside any Lua script of the project, and the handler's."""
    found = {"incr", "get", "time", "rpush"}  # benchmarks/peer_tasks.py COUNT_LUA
    pattern = re.compile(r"redis\.p?call\(\s*['\"](\w+)")
    for path in LUA_DIR.rglob("*.lua"):
        found.update(m.lower() for m in pattern.findall(path.read_text()))
    return found


def commandstats_report(
    before: Mapping[str, Any], after: Mapping[str, Any], n: int
) -> dict[str, Any]:
    """Per task: µs in multiswarm's scripts, µs in its other commands, and calls per command.

    Redis counts a command a script runs both under the script and under its own name, so the
    script time already holds it. A command seen outside the scripts is one no Lua script uses;
    one that multiswarm's Python sends directly but a script also uses is counted in neither sum
    (``direct_usec_per_task`` is a lower bound).
    """
    delta: dict[str, tuple[int, int]] = {}
    for key, stats in after.items():
        old = before.get(key, {"calls": 0, "usec": 0})
        calls, usec = stats["calls"] - old["calls"], stats["usec"] - old["usec"]
        if calls:
            delta[key.removeprefix("cmdstat_")] = (calls, usec)
    inner = lua_commands()
    scripts = sum(u for c, (_, u) in delta.items() if c in SCRIPT_COMMANDS)
    direct = sum(
        u
        for c, (_, u) in delta.items()
        if c not in SCRIPT_COMMANDS and c not in inner and c != "eval" and c not in DRIVER_COMMANDS
    )
    top = sorted(delta.items(), key=lambda kv: -kv[1][1])[:12]
    return {
        "scripts_usec_per_task": round(scripts / n, 1),
        "direct_usec_per_task": round(direct / n, 1),
        "handler_eval_usec_per_task": round(delta.get("eval", (0, 0))[1] / n, 1),
        "per_task": {c: {"calls": round(k / n, 2), "usec": round(u / n, 1)} for c, (k, u) in top},
    }


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if value >= 100 else f"{value:.3g}" if value < 10 else f"{value:.1f}"
    return text + unit


def _get(p: Mapping[str, Any], phase: str, metric: str) -> float | None:
    value = p.get(phase, {}).get(metric)
    return float(value) if value is not None else None


def _both(passes: list[dict[str, Any]], phase: str, metric: str, unit: str = "") -> str:
    return " / ".join(_fmt(_get(p, phase, metric), unit) for p in passes)


def _exact(passes: list[dict[str, Any]]) -> str:
    bad = [
        f"pass {p['pass']} {ph}: {v['count']} of {v['expected']}"
        for p in passes
        for ph, v in p.items()
        if isinstance(v, dict) and "exact" in v and not v["exact"]
    ]
    missing = [
        f"pass {p['pass']} {ph}: recorded {v['recorded']}"
        for p in passes
        for ph, v in p.items()
        if isinstance(v, dict)
        and v.get("recorded") is not None
        and v["recorded"] != v.get("expected")
    ]
    failed = [
        f"pass {p['pass']}: {len(p['round_trip']['failed'])} round trips failed "
        f"({p['round_trip']['failed'][0]})"
        for p in passes
        if p.get("round_trip", {}).get("failed")
    ]
    problems = bad + missing + failed
    return "yes" if not problems else "NO: " + "; ".join(problems)


def _ratio(result: Mapping[str, Any], a: str, b: str, phase: str, metric: str) -> str:
    systems = result["systems"]
    if a not in systems or b not in systems:
        return "-"
    out = []
    for pa, pb in zip(systems[a]["passes"], systems[b]["passes"]):
        x, y = _get(pa, phase, metric), _get(pb, phase, metric)
        out.append(f"{x / y:.2f}" if x and y else "-")
    return " / ".join(out)


def _load(result: Mapping[str, Any]) -> str:
    loads = [
        x
        for d in result["systems"].values()
        for p in d["passes"]
        for x in p.get("load_avg_1min", [])
    ]
    return f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"


def markdown(result: Mapping[str, Any]) -> str:
    """The "peers" section of RESULTS.md."""
    v = result["versions"]
    lines = [
        "## multiswarm against its peers (`benchmarks/bench_peers.py`)",
        "",
        f"Machine: {result['machine']}; redis-server {result['redis_server']} on loopback; "
        f"1-minute load average during the runs {_load(result)} (other processes share the "
        "machine)  ",
        f"Command: `{result['command'].strip()}` ({result['date']})",
        "",
        f"N = {result['tasks']} no-op tasks per phase, 2 processes running handlers for every "
        f"system, one private Redis and one driver for all; {result['passes']} passes "
        f"(order {' then '.join(', '.join(o) for o in result['orders'])}); each cell is "
        "pass 1 / pass 2. Round trip: "
        f"{result['round_trips']} sequential tasks after 5 warm-up ones.",
        "",
        "| system | end-to-end tasks/s | drain tasks/s | round trip p50 | round trip p90 "
        "| Redis CPU µs/task | CPU µs/task, all processes | every count exact |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, data in result["systems"].items():
        passes = data["passes"]
        label = LABELS[name].format(v=v.get(name, "?"))
        errors = "; ".join(f"pass {p['pass']}: {p['error']}" for p in passes if "error" in p)
        lines.append(
            f"| {label} | {_both(passes, 'end_to_end', 'tasks_per_s')} | "
            f"{_both(passes, 'drain', 'tasks_per_s')} | "
            f"{_both(passes, 'round_trip', 'p50_ms', ' ms')} | "
            f"{_both(passes, 'round_trip', 'p90_ms', ' ms')} | "
            f"{_both(passes, 'end_to_end', 'redis_cpu_usec_per_task')} | "
            f"{_both(passes, 'end_to_end', 'cpu_usec_per_task_all')} | "
            f"{_exact(passes)}{' (' + errors + ')' if errors else ''} |"
        )
    lines += [
        "",
        "Ratios in the same pass (targets of issue 11): multiswarm / Dramatiq end-to-end "
        f"**{_ratio(result, 'multiswarm', 'dramatiq', 'end_to_end', 'tasks_per_s')}** (>= 2); "
        f"drain **{_ratio(result, 'multiswarm', 'dramatiq', 'drain', 'tasks_per_s')}** (>= 2); "
        "multiswarm / SAQ round trip p50 "
        f"**{_ratio(result, 'multiswarm', 'saq', 'round_trip', 'p50_ms')}** (<= 1). "
        "CPU per task of all processes, Dramatiq / multiswarm "
        f"**{_ratio(result, 'dramatiq', 'multiswarm', 'end_to_end', 'cpu_usec_per_task_all')}**.",
    ]
    ms = result["systems"].get("multiswarm", {}).get("passes", [])
    stats = [
        p["end_to_end"]["commandstats"] for p in ms if "commandstats" in p.get("end_to_end", {})
    ]
    if stats:
        top = ", ".join(
            f"{c} {d['calls']} calls / {d['usec']} µs"
            for c, d in list(stats[0]["per_task"].items())[:8]
        )
        lines += [
            "",
            "multiswarm Redis cost per task over the end-to-end window (target <= 40 µs): "
            f"used CPU {_both(ms, 'end_to_end', 'redis_cpu_usec_per_task', ' µs')}; "
            "`INFO commandstats`: its Lua functions (FCALL, including the commands they run) "
            + " / ".join(f"{s['scripts_usec_per_task']} µs" for s in stats)
            + ", its other commands (lower bound) "
            + " / ".join(f"{s['direct_usec_per_task']} µs" for s in stats)
            + ", the handler's counting EVAL "
            + " / ".join(f"{s['handler_eval_usec_per_task']} µs" for s in stats)
            + f". Per task in pass 1: {top}.",
        ]
    splits = [
        ", ".join(
            [f"{k} {v}" for k, v in c.items() if k not in ("total", "driver") and v]
            + [f"Redis {p['end_to_end']['redis_cpu_usec_per_task']}", f"driver {c['driver']}"]
        )
        for p in ms
        if (c := p.get("end_to_end", {}).get("cpu_by_process"))
    ]
    if splits:
        lines += [
            "",
            "multiswarm CPU per task over the end-to-end window, by process (µs; pass by pass): "
            + "; ".join(splits)
            + ".",
        ]
    api = {
        n: d["passes"][0].get("round_trip", {}).get("api", "")
        for n, d in result["systems"].items()
        if d["passes"]
    }
    lines += [
        "",
        "- end to end: workers running, N / (N-th handler run - first submit); "
        "drain: N submitted first, then the worker processes spawned, N / (N-th run - spawn) "
        "(so it includes their start-up). Times from the Redis clock: the handler (one EVAL "
        "that INCRs the phase's counter) stamps the first and the N-th run.",
        "- every count exact: each phase's counter, read after the workers stopped, equals the "
        "tasks submitted, and the library records every one of them as completed.",
        "- Redis CPU: `used_cpu_sys + used_cpu_user` over the end-to-end window / N, including "
        "the handler's EVAL and the driver's few commands.",
        "- CPU, all processes: over the same window, user + system CPU of every process the "
        "system runs (`/proc/<pid>/stat` of the processes carrying this run's mark: workers, "
        "their children, multiswarm's registry and coordinator), plus Redis's and the driver's "
        "(this process, submitting and waiting), / N. The handler's own work (one redis-py "
        "EVAL) is in it for every system alike (benchmarks/proc_cpu.py).",
        "- submission as a user of each library would: multiswarm `TaskStore.submit` (batched "
        "script calls), Dramatiq `actor.send` per task, SAQ `Queue.enqueue` gathered, Celery "
        "`apply_async` per task, RQ `Queue.enqueue_many`.",
        "- round trip, one task at a time through each library's own API: "
        + "; ".join(f"{n}: {a}" for n, a in api.items())
        + ".",
        "- Celery workers run with `--without-mingle --without-gossip --without-heartbeat`.",
        "- bytecode: the run first compiles multiswarm and the handlers' module (`compileall`),"
        " as a package install does; the peers run from site-packages, compiled (decision 85).",
    ]
    return "\n".join(lines)
