"""The script layer: every Lua script declared once, called through typed functions.

:mod:`multiswarm.ops.script` holds the declaration (:class:`~multiswarm.ops.script.Script`) and
the one reply decoder; one module per script family (``tasks``, ``swarms``, ``leadership``,
``votes``, ``breakers``, ``resources``, ``messages``, ``state``, ``recovery``) declares its
scripts with their reply types and retry idempotency, and offers a typed function per script
that builds the script's KEYS (from :mod:`multiswarm.keys`) and ARGV in the order the script's
header documents. Components call those functions, never ``Scripts.call`` (a test forbids it).
"""

# Every family is imported here, so importing the package declares every script: the loader
# (multiswarm.scripts) builds its retry tables from DECLARED.
from multiswarm.ops import (
    breakers,
    leadership,
    messages,
    partitions,
    recovery,
    resources,
    script,
    state,
    swarms,
    tasks,
    votes,
)
from multiswarm.ops.script import DECLARED

__all__ = [
    "DECLARED",
    "breakers",
    "leadership",
    "messages",
    "partitions",
    "recovery",
    "resources",
    "script",
    "state",
    "swarms",
    "tasks",
    "votes",
]
