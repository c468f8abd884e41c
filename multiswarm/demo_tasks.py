"""Handlers of the demo workload, and its single-process reference.

Map tasks, one pair per file: ``parse_file`` tokenizes Python source and counts identifiers
(capability ``parse``); ``compress_file`` zlib-compresses it and records the sizes (capability
``compress``). ``reduce_group`` merges the map results of a group of files (it depends on them);
``reduce_final`` merges the groups into a summary whose ``digest`` covers every count. The same
functions run in one process in :func:`reference`, so the distributed result can be checked.
"""

from __future__ import annotations

import hashlib
import io
import json
import tokenize
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from multiswarm.agents import TaskContext

#: zlib level used for the compression ratio (the library default).
ZLIB_LEVEL = 6


def count_identifiers(data: bytes) -> tuple[dict[str, int], str]:
    """Identifier (NAME token) counts of Python source, and the tokenize error if any."""
    counts: Counter[str] = Counter()
    error = ""
    try:
        for tok in tokenize.tokenize(io.BytesIO(data).readline):
            if tok.type == tokenize.NAME:
                counts[tok.string] += 1
    except (tokenize.TokenError, SyntaxError, UnicodeDecodeError) as e:
        error = f"{type(e).__name__}: {e}"
    return dict(counts), error


def parse_file(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    data = Path(payload["path"]).read_bytes()
    counts, error = count_identifiers(data)
    return {"path": payload["path"], "counts": counts, "error": error}


def compress_file(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    data = Path(payload["path"]).read_bytes()
    return {"path": payload["path"], "raw": len(data),
            "compressed": len(zlib.compress(data, ZLIB_LEVEL))}


def merge(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Merge map results (or group results) into one group result."""
    counts: Counter[str] = Counter()
    raw = compressed = files = 0
    errors: list[str] = []
    for part in parts:
        if "path" in part and "counts" in part:
            counts.update(part["counts"])
            files += 1
            if part["error"]:
                errors.append(part["path"])
        elif "path" in part:
            raw += part["raw"]
            compressed += part["compressed"]
        else:
            counts.update(part["counts"])
            raw += part["raw"]
            compressed += part["compressed"]
            files += part["files"]
            errors += part["errors"]
    return {"counts": dict(counts), "raw": raw, "compressed": compressed, "files": files,
            "errors": sorted(errors)}


def reduce_group(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return merge(ctx.dependencies[d] for d in sorted(ctx.dependencies))


def summarize(group: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, int] = group["counts"]
    canonical = json.dumps(sorted(counts.items()), separators=(",", ":")).encode()
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return {
        "files": group["files"], "identifiers": sum(counts.values()), "distinct": len(counts),
        "top": [list(kv) for kv in top], "digest": hashlib.sha256(canonical).hexdigest(),
        "raw_bytes": group["raw"], "compressed_bytes": group["compressed"],
        "ratio": round(group["compressed"] / group["raw"], 6) if group["raw"] else 0.0,
        "tokenize_errors": len(group["errors"]),
    }


def reduce_final(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return summarize(merge(ctx.dependencies[d] for d in sorted(ctx.dependencies)))


def reference(paths: Sequence[Path]) -> dict[str, Any]:
    """The whole computation in this process: the answer the distributed run must equal."""
    ctx = TaskContext(task_id="reference", attempt=1, dependencies={})
    parts: list[dict[str, Any]] = []
    for p in paths:
        parts.append(parse_file({"path": str(p)}, ctx))
        parts.append(compress_file({"path": str(p)}, ctx))
    return summarize(merge(parts))


def noop(payload: Any, ctx: TaskContext) -> Any:
    """The no-op handler of the throughput benchmark."""
    return payload


def fail_always(payload: Any, ctx: TaskContext) -> Any:
    """A handler that always raises (retry and dead-letter tests)."""
    raise RuntimeError(f"failing on purpose (attempt {ctx.attempt})")


def sleep_then_return(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Sleeps ``payload['seconds']`` then returns the payload (crash and lease tests)."""
    import time

    time.sleep(float(payload.get("seconds", 1.0)))
    return {"task": ctx.task_id, "slept": payload.get("seconds", 1.0)}


def burn_cpu(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Busy-loops for ``payload['seconds']`` (heartbeats must continue meanwhile)."""
    import time

    end = time.perf_counter() + float(payload.get("seconds", 1.0))
    n = 0
    while time.perf_counter() < end:
        n += 1
    return {"task": ctx.task_id, "loops": n}
