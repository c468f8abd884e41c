"""``multiswarm-cli status``, ``agents list``, ``swarms list|show|complete|fail|delete`` and
``pause|resume|scale``: what is registered and what runs where, and the swarm operations.

What runs where is read from the task records, which change as tasks start and end, not from
the workers' last heartbeat (up to one interval old). A swarm id may be given as a unique prefix
where the command can be undone (show, pause, resume, scale, ``agents list --swarm``); ``complete``, ``fail`` and
``delete`` cannot be undone and take the whole id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click
import msgspec

from multiswarm import Multiswarm, Swarm
from multiswarm.api_types import (
    PRIORITIES,
    SWARM_STATUSES,
    AgentInfo,
    LeaderInfo,
    StatusReport,
)
from multiswarm.cli_common import (
    ago,
    call,
    emit,
    make_table,
    report,
    table,
    usage_failure,
    watch_option,
)

if TYPE_CHECKING:
    from rich.console import RenderableType


def leader_dict(info: LeaderInfo | None) -> dict[str, Any]:
    """The ``leader --json`` object; every field null (lease 0) while the lease is vacant."""
    if info is None:
        return {"holder": None, "host": None, "pid": None, "epoch": None, "lease_ms_left": 0}
    # omit_defaults: no ``partitions`` with one partition, the object it always was
    out: dict[str, Any] = msgspec.to_builtins(info)
    return out


def swarm_state(status: str, paused: bool) -> str:
    """``active (paused)``: a paused swarm takes no work, so it never reads plain ``active``."""
    return status + (" (paused)" if paused else "")


def _ids(ids: Sequence[str], shown: int = 3) -> str:
    return ",".join(ids[:shown]) + (f" +{len(ids) - shown}" if len(ids) > shown else "")


def status_parts(r: StatusReport) -> list[RenderableType | str]:
    ld = r.leader
    return [
        f"namespace {r.namespace}; leader: " + (f"{ld.holder} epoch {ld.epoch}" if ld else "none"),
        make_table(
            ["swarm", "status", "capabilities", "active/capacity", "hosts"],
            [
                [
                    s.id,
                    swarm_state(s.status, s.paused),
                    ",".join(s.capabilities),
                    f"{s.active}/{s.capacity}",
                    ",".join(s.hosts),
                ]
                for s in r.swarms
            ],
        ),
        make_table(
            ["worker", "host", "pid", "running", "tasks", "last beat"],
            [
                [w.id, w.host, w.pid, w.running, _ids(w.tasks), f"{w.beat_ms_ago / 1000:.1f} s ago"]
                for w in r.workers
            ],
        ),
        "tasks: " + ", ".join(f"{k} {v}" for k, v in r.tasks.items()),
    ]


@click.command()
@watch_option
@click.pass_context
def status(ctx: click.Context, watch_s: float | None) -> None:
    """Swarms, workers and the tasks they run now, the leader, task counts."""

    async def render(ms: Multiswarm) -> tuple[dict[str, Any], Sequence[RenderableType | str]]:
        r = await ms.status()
        data = {**{f: getattr(r, f) for f in r.__struct_fields__}, "leader": leader_dict(r.leader)}
        return data, status_parts(r)

    report(ctx, render, watch_s)


@click.group()
def agents() -> None:
    """The members of swarms (Python agents and external processes), what they run, health."""


@agents.command("list")
@click.option(
    "--swarm", "swarm_id", default=None, help="Only this swarm's members (id or unique prefix)."
)
@click.pass_context
def agents_list(ctx: click.Context, swarm_id: str | None) -> None:
    """Every member and the task(s) it runs now; health as its worker last reported it,
    ``stale`` when that report is older than 30 s."""

    async def list_(ms: Multiswarm) -> list[AgentInfo]:
        sid = swarm_id and await ms.resolve_swarm_id(swarm_id)
        found = await ms.list_agents(sid)
        if sid and not found:
            await ms.get_swarm(sid)  # no such swarm: NotFound, exit 1, as `swarms show` says
        return found

    rows = call(ctx, list_)
    columns = ["agent", "swarm", "worker", "kind", "state"]
    emit(
        ctx,
        rows,
        lambda: table(
            [*columns, "tasks", "health", "failures", "restarts", "stale"],
            [
                [getattr(a, c) for c in columns]
                + [",".join(a.tasks), a.health, a.failures, a.restarts, "stale" if a.stale else ""]
                for a in rows
            ],
        ),
    )


# -- swarms ------------------------------------------------------------------------------------
@click.group()
def swarms() -> None:
    """List and inspect swarms; finish (complete, fail) and forget (delete) them."""


def swarm_dict(s: Swarm) -> dict[str, Any]:
    """A swarm as ``swarms list|show --json`` print it (``paused`` is its own field)."""
    return {
        "id": s.id,
        "status": s.status,
        "paused": s.paused,
        "capabilities": s.capabilities,
        "priority": PRIORITIES[s.prio] if 0 <= s.prio < len(PRIORITIES) else str(s.prio),
        "agents": s.max_agents,
        "external": s.external,
        "active": s.active,
        "capacity": s.capacity,
        "hosts": s.host_workers,
        "objective": s.objective,
        "created_ms": s.created_ms,
        "status_ms": s.status_ms,
        "recoveries": s.recoveries,
    }


@swarms.command("list")
@click.option(
    "--status",
    "status_",
    default=None,
    type=click.Choice(SWARM_STATUSES),
)
@click.pass_context
def swarms_list(ctx: click.Context, status_: str | None) -> None:
    """Every swarm (or those of one status), by id."""
    rows = [swarm_dict(s) for s in call(ctx, lambda ms: ms.list_swarms(status_))]
    emit(
        ctx,
        rows,
        lambda: table(
            ["swarm", "status", "capabilities", "agents", "active/capacity", "hosts", "since"],
            [
                [
                    r["id"],
                    swarm_state(r["status"], r["paused"]),
                    ",".join(r["capabilities"]),
                    r["agents"],
                    f"{r['active']}/{r['capacity']}",
                    ",".join(r["hosts"]),
                    ago(r["status_ms"]),
                ]
                for r in rows
            ],
        ),
    )


@swarms.command("show")
@click.argument("swarm_id", metavar="SWARM")
@click.pass_context
def swarms_show(ctx: click.Context, swarm_id: str) -> None:
    """One swarm (SWARM may be a unique prefix of its id)."""

    async def get(ms: Multiswarm) -> Swarm:
        return await ms.get_swarm(await ms.resolve_swarm_id(swarm_id))

    d = swarm_dict(call(ctx, get))
    emit(ctx, d, lambda: click.echo("\n".join(f"{k:>12}: {v}" for k, v in d.items())))


def _finish_command(verb: str, status: str, doc: str) -> click.Command:
    @click.command(verb, help=doc)
    @click.argument("swarm_id", metavar="SWARM")
    @click.pass_context
    def command(ctx: click.Context, swarm_id: str) -> None:
        method = {
            "complete": Multiswarm.complete_swarm,
            "fail": Multiswarm.fail_swarm,
            "delete": Multiswarm.delete_swarm,
        }[verb]
        before = call(ctx, lambda ms: method(ms, swarm_id))
        changed = before != status
        done = f"{swarm_id} {status}" if verb != "delete" else f"{swarm_id} ({before}) deleted"
        emit(
            ctx,
            {"swarm": swarm_id, "status": status, "before": before, "changed": changed},
            done if changed else f"{swarm_id} was already {status}",
        )

    return command


swarms.add_command(
    _finish_command(
        "complete",
        "completed",
        "Finish active SWARM as completed: it takes no more work, queued tasks go back to "
        "ready for other swarms, running ones finish. Whole id only.",
    )
)
swarms.add_command(
    _finish_command(
        "fail",
        "failed",
        "Finish SWARM (any unfinished status) as failed; otherwise as complete. Whole id only.",
    )
)
swarms.add_command(
    _finish_command(
        "delete",
        "deleted",
        "Forget a completed, failed or interrupted SWARM with no task queued, assigned or running "
        "now instead of after the archive period (its snapshots stay until they expire). Whole id "
        "only.",
    )
)


# -- pause, resume, scale ----------------------------------------------------------------------
def _pause_command(paused: bool) -> click.Command:
    verb = "pause" if paused else "resume"
    doc = (
        "Stop dispatch to SWARM and claims by its workers; running tasks finish, queued ones wait."
        if paused
        else "Let SWARM take work again after a pause."
    )

    @click.command(verb, help=doc)
    @click.argument("swarm_id", metavar="SWARM")
    @click.pass_context
    def command(ctx: click.Context, swarm_id: str) -> None:
        method = Multiswarm.pause_swarm if paused else Multiswarm.resume_swarm

        async def act(ms: Multiswarm) -> tuple[str, bool]:
            sid = await ms.resolve_swarm_id(swarm_id)
            return sid, await method(ms, sid)

        sid, changed = call(ctx, act)
        emit(
            ctx,
            {"swarm": sid, "paused": paused, "changed": changed},
            f"{sid} {verb}d" if changed else f"{sid} was already {verb}d",
        )

    return command


pause = _pause_command(True)
resume = _pause_command(False)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("swarm_id", metavar="SWARM")
@click.argument("target", type=int)
@click.pass_context
def scale(ctx: click.Context, swarm_id: str, target: int) -> None:
    """Scale SWARM to TARGET members per hosting worker (1 to 1000): growth split 70% Python
    agents / 30% external members, Python agents removed first, at least one of each kind
    kept."""
    # TARGET is an int argument, not an IntRange, and unknown options are let through, so that
    # `scale s -3` says what TARGET must be instead of "No such option: -3"
    if not 1 <= target <= 1000:
        raise usage_failure(f"TARGET must be >= 1 and <= 1000 (members per worker), not {target}")

    async def act(ms: Multiswarm) -> tuple[str, tuple[int, int]]:
        sid = await ms.resolve_swarm_id(swarm_id)
        return sid, await ms.scale_swarm(sid, target)

    sid, (python, external) = call(ctx, act)
    emit(
        ctx,
        {"swarm": sid, "python": python, "external": external},
        f"{sid}: {python} Python agents, {external} external members",
    )
