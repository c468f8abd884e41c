"""The circuit breaker scripts: KEYS[1] is the breakers hash (keys.py)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from multiswarm.keys import Keys
from multiswarm.ops.script import Script, ScriptRunner


class Admission(msgspec.Struct, array_like=True, frozen=True):
    """acquire_breaker's reply: whether the call may proceed, the state and generation the
    permit belongs to, and when refused how long until a retry may pass (ms)."""

    allowed: bool
    state: str
    gen: int
    retry_after_ms: int


class Recorded(msgspec.Struct, array_like=True, frozen=True):
    """record_breaker's reply; ``counted`` False when the permit was stale."""

    state: str
    gen: int
    counted: bool


ACQUIRE = Script("acquire_breaker", Admission, request_id=True)
RECORD = Script("record_breaker", Recorded, request_id=True)
RESET = Script(
    "reset_breakers",
    list[str],
    by_nature="forces breakers closed; a repeat leaves them closed",
)


async def acquire_breaker(scripts: ScriptRunner, keys: Keys, name: str) -> Admission:
    """Ask a breaker for a permit. Raises NotFound."""
    return await ACQUIRE(scripts, [keys.breakers], [name])


async def record_breaker(
    scripts: ScriptRunner, keys: Keys, name: str, gen: int, outcome: str, error: str
) -> Recorded:
    """Report a permitted call's outcome. Raises NotFound, BadRequest."""
    return await RECORD(scripts, [keys.breakers], [name, gen, outcome, error])


async def reset_breakers(scripts: ScriptRunner, keys: Keys, names: Sequence[str]) -> list[str]:
    """Force ``names`` (none: every breaker) closed; the names reset."""
    return await RESET(scripts, [keys.breakers], list(names))
