"""Redis time of each script call, from ``SLOWLOG`` (shared by the scale benchmarks).

With the threshold at 0 µs Redis logs every command, those its scripts run included, with its
duration; a script call is an ``FCALL`` of the multiswarm library (``<library>_<script>``), or,
on a checkout from before the library (decision 42), an ``EVALSHA`` named by the SHA of this
checkout's script sources.
"""

from __future__ import annotations

import hashlib
from typing import Any

from multiswarm import script_library as scripts


def _sha_names() -> dict[str, str]:
    return {hashlib.sha1(s.encode()).hexdigest(): n for n, s in scripts.sources().items()}


SHA_NAMES = _sha_names()


def script_name(words: list[str]) -> str | None:
    """The script a logged command ran, or None when it ran none."""
    if len(words) < 2:
        return None
    verb = words[0].upper()
    if verb in ("FCALL", "FCALL_RO"):
        return words[1].split("_", 2)[-1] if words[1].startswith("multiswarm_") else words[1]
    if verb in ("EVALSHA", "EVALSHA_RO"):
        return SHA_NAMES.get(words[1], words[1][:8])
    return None


async def record(client: Any, on: bool, at_least_us: int = 0) -> None:
    """Log every command of ``at_least_us`` or more (Redis 7 logs those scripts run too; at 0
    the logging itself slows a script that runs many commands) from now on, or none; reset."""
    await client.config_set("slowlog-max-len", 1_000_000)
    await client.config_set("slowlog-log-slower-than", at_least_us if on else 10_000_000)
    await client.slowlog_reset()


async def script_times(client: Any) -> list[tuple[str, int]]:
    """(script name, µs) of every script call since the last reset, then reset."""
    entries = await client.slowlog_get(1_000_000)
    await client.slowlog_reset()
    out = []
    for e in entries:
        command = e["command"]
        if isinstance(command, bytes):
            command = command.decode(errors="replace")  # payloads are binary
        name = script_name(command.split(maxsplit=2))
        if name is not None:
            out.append((name, int(e["duration"])))
    return out


def summary(times: list[tuple[str, int]], name: str) -> dict[str, Any]:
    """Calls of script ``name`` and their Redis time: mean, median and max in ms."""
    us = sorted(t for n, t in times if n == name)
    if not us:
        return {"calls": 0}
    return {
        "calls": len(us),
        "mean_ms": round(sum(us) / len(us) / 1000, 3),
        "p50_ms": round(us[len(us) // 2] / 1000, 3),
        "max_ms": round(us[-1] / 1000, 3),
    }


async def scripts_usec(client: Any) -> int:
    """Redis time (µs) of every script call since the last ``CONFIG RESETSTAT`` (commandstats:
    no per-command logging, so exact for a long script)."""
    stats = await client.info("commandstats")
    return sum(
        int(v["usec"])
        for k, v in stats.items()
        if k in ("cmdstat_fcall", "cmdstat_evalsha", "cmdstat_fcall_ro", "cmdstat_evalsha_ro")
    )
