"""Integer codes shared by the kernels, their references and their wrappers.

Kernels work on integers, so every enumeration is a module-level ``int`` (Numba freezes module
globals into the compiled code) plus a ``name -> code`` mapping for the wrappers and the CLI.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALL_CAPABLE_AGENTS_FULL",
    "ASSIGNED",
    "CAPABILITY",
    "DEAD",
    "DEGRADED",
    "DEPENDENCY_CYCLE",
    "DEPENDENCY_UNASSIGNED",
    "EVICTION_POLICIES",
    "EVICT_FIFO",
    "EVICT_LFU",
    "EVICT_LRU",
    "EVICT_NONE",
    "EVICT_TTL",
    "HEALTHY",
    "LEAST_LOADED",
    "LOAD_BALANCED",
    "NO_CAPABLE_AGENT",
    "NO_HEALTHY_CAPABLE_AGENT",
    "N_FLOAT_ROWS",
    "N_INT_ROWS",
    "REASON_NAMES",
    "ROUND_ROBIN",
    "ROW_ALLOC",
    "ROW_COUNT",
    "ROW_DEADLINE",
    "ROW_INSERTED",
    "ROW_LAST_ACCESS",
    "ROW_NBYTES",
    "ROW_NREGIONS",
    "ROW_OWNER",
    "ROW_PINNED",
    "ROW_START",
    "STATUS_NOT_OWNER",
    "STATUS_OK",
    "STATUS_OUT_OF_MEMORY",
    "STATUS_OVER_LIMIT",
    "STATUS_UNKNOWN_ALLOCATION",
    "STRATEGIES",
    "UNHEALTHY",
]

# --- agent health: int8 codes for the states of DESIGN.md, Resilience ----------------------------
# (The registry derives the state from consecutive failures; the kernels only see the code.)
#: Agent is healthy; may receive work.
HEALTHY: Final = 0
#: Agent had a few consecutive failures; still receives work.
DEGRADED: Final = 1
#: Agent failed repeatedly; receives no work.
UNHEALTHY: Final = 2
#: Agent is gone; receives no work and its memory regions may be garbage-collected.
DEAD: Final = 3

# --- scheduling strategies ----------------------------------------------------------------------
#: Next eligible agent after a cursor that persists between batches.
ROUND_ROBIN: Final = 0
#: Eligible agent with the lowest current load (ties: lowest index).
LEAST_LOADED: Final = 1
#: Eligible agent with the lowest load / capacity ratio (ties: lowest index).
LOAD_BALANCED: Final = 2
#: Eligible agent with the fewest capability bits beyond the task's (best fit); ties to the
#: lowest load / capacity ratio, then the lowest index.
CAPABILITY: Final = 3

#: Strategy name -> code, for configuration and the CLI.
STRATEGIES: Final[dict[str, int]] = {
    "round_robin": ROUND_ROBIN,
    "least_loaded": LEAST_LOADED,
    "load_balanced": LOAD_BALANCED,
    "capability": CAPABILITY,
}

# --- why a task got (or did not get) an agent: int8 codes ---------------------------------------
#: The task was placed.
ASSIGNED: Final = 0
#: No agent of the swarm, whatever its health, has every capability bit the task requires.
NO_CAPABLE_AGENT: Final = 1
#: Capable agents exist but all are unhealthy or dead.
NO_HEALTHY_CAPABLE_AGENT: Final = 2
#: Healthy capable agents exist but none has room for the task's cost.
ALL_CAPABLE_AGENTS_FULL: Final = 3
#: A dependency in the batch was not placed (directly or transitively).
DEPENDENCY_UNASSIGNED: Final = 4
#: The task lies on a dependency cycle (a self-dependency counts).
DEPENDENCY_CYCLE: Final = 5

#: Reason code -> name, for logs and error messages.
REASON_NAMES: Final[dict[int, str]] = {
    ASSIGNED: "assigned",
    NO_CAPABLE_AGENT: "no_capable_agent",
    NO_HEALTHY_CAPABLE_AGENT: "no_healthy_capable_agent",
    ALL_CAPABLE_AGENTS_FULL: "all_capable_agents_full",
    DEPENDENCY_UNASSIGNED: "dependency_unassigned",
    DEPENDENCY_CYCLE: "dependency_cycle",
}

# --- region pool eviction policies --------------------------------------------------------------
#: Never evict: a request that does not fit fails.
EVICT_NONE: Final = 0
#: Least recently touched allocation first (ties: oldest allocation id).
EVICT_LRU: Final = 1
#: Fewest touches first; ties to least recently touched, then oldest allocation id.
EVICT_LFU: Final = 2
#: Earliest inserted first (ties: oldest allocation id).
EVICT_FIFO: Final = 3
#: Earliest TTL deadline first; allocations without a TTL last, in insertion order.
EVICT_TTL: Final = 4

#: Eviction policy name -> code.
EVICTION_POLICIES: Final[dict[str, int]] = {
    "none": EVICT_NONE,
    "lru": EVICT_LRU,
    "lfu": EVICT_LFU,
    "fifo": EVICT_FIFO,
    "ttl": EVICT_TTL,
}

# --- region pool kernel status codes ------------------------------------------------------------
#: The operation was carried out.
STATUS_OK: Final = 0
#: No contiguous run fits, even after evicting every evictable allocation.
STATUS_OUT_OF_MEMORY: Final = 1
#: The agent's region limit would be exceeded.
STATUS_OVER_LIMIT: Final = 2
#: The (allocation id, start region) pair does not name a live allocation.
STATUS_UNKNOWN_ALLOCATION: Final = 3
#: The allocation is owned by another agent than the one named.
STATUS_NOT_OWNER: Final = 4

# --- region table layout: rows of the pool's int64 and float64 tables ---------------------------
# Every region has a column. The first five rows describe the region itself; the others describe
# the allocation and are kept only in the column of its first region (zero elsewhere), so that an
# allocation is found from any of its regions through START.
#: int64 row: agent owning the region, -1 if free.
ROW_OWNER: Final = 0
#: int64 row: allocation id holding the region, -1 if free.
ROW_ALLOC: Final = 1
#: int64 row: first region of that allocation, -1 if free.
ROW_START: Final = 2
#: int64 row (first region only): number of regions of the allocation.
ROW_NREGIONS: Final = 3
#: int64 row (first region only): bytes requested, at most NREGIONS * region size.
ROW_NBYTES: Final = 4
#: int64 row (first region only): accesses, counting the allocation itself as the first.
ROW_COUNT: Final = 5
#: int64 row (first region only): 1 if the allocation may never be evicted or expired.
ROW_PINNED: Final = 6
#: Number of int64 rows.
N_INT_ROWS: Final = 7
#: float64 row (first region only): clock time of the last access, in seconds.
ROW_LAST_ACCESS: Final = 0
#: float64 row (first region only): clock time of allocation, in seconds.
ROW_INSERTED: Final = 1
#: float64 row (first region only): clock time after which the allocation expires, inf for never.
ROW_DEADLINE: Final = 2
#: Number of float64 rows.
N_FLOAT_ROWS: Final = 3
