"""The 26 keys every task script takes first, as one typed record (built by
:attr:`multiswarm.keys.Keys.task_keys`)."""

from __future__ import annotations

import msgspec


class TaskKeys(msgspec.Struct, frozen=True, kw_only=True):
    """KEYS[1..26] of every task script. ``scripts/lua/lib/02_tasks.lua`` (``load_task_keys``)
    reads them in this field order, under the same names (``TK.<field>``); a unit test keeps the
    two in step.
    """

    tasks: str
    payload: str
    result: str
    dependents: str
    ready: str
    delayed: str
    leases: str
    dlq: str
    completions: str
    stats: str
    swarms: str
    epoch: str
    workers: str
    heartbeats: str
    #: present while someone listens to task events (:attr:`Keys.events_watch`)
    events_watch: str
    #: zset, every member ``<worker id>|<task id>`` (score 0, read by lex range): the tasks
    #: running on each worker, so a worker's death costs its own tasks, not all running ones
    running_by_worker: str
    #: zset, score 0, read by lex range: ``<dep>|<task>`` for each task still waiting on
    #: dependency ``dep``, and ``!<outcome>|<id>`` for each ended task whose dependents are
    #: still to be released or cancelled (done in bounded steps: decision 41)
    waiting: str
    #: zset, score 0, read by lex range: ``<dep>|<task>`` for each task submitted depending on
    #: ``dep``, the readers of its result, which the prune sweep keeps while one is unfinished
    readers: str
    #: one status index per :data:`TASK_STATUSES`, in that order; those of ready, assigned and
    #: running are passed but no longer written (decision 61: the ready, parked, leases and
    #: running-by-worker zsets hold those tasks), and prune_tasks deletes what is left in them
    statuses: tuple[str, ...]

    def as_list(self) -> list[str]:
        """The keys in the order the Lua side reads them."""
        *named, statuses = msgspec.structs.astuple(self)
        return [*named, *statuses]
