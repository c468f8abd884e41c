"""Handlers of the demo workload, and its single-process reference.

Map tasks, one pair per file: ``parse_file`` tokenizes Python source and counts identifiers
(capability ``parse``); ``compress_file`` zlib-compresses it and records the sizes (capability
``compress``). ``reduce_group`` merges the map results of a group of files (it depends on them);
``reduce_final`` merges the groups into a summary whose ``digest`` covers every count. The same
functions run in one process in :func:`reference`, so the distributed result can be checked.

Whoever can write to Redis chooses a task's handler and payload, and these handlers are
registered (``@handler``) on every worker by default (multiswarm.handlers.DEFAULT_IMPORTS). So the map handlers read only ``.py`` files
under the directory in ``MULTISWARM_DEMO_CORPUS``, which ``multiswarm-cli demo`` sets for the
processes it starts; on any other worker they read nothing (docs/security.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tokenize
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from multiswarm.agents import TaskContext
from multiswarm.errors import HandlerError
from multiswarm.handlers import handler

#: zlib level used for the compression ratio (the library default).
ZLIB_LEVEL = 6

#: Environment variable naming the only directory the map handlers may read (``.py`` files).
CORPUS_ENV = "MULTISWARM_DEMO_CORPUS"


def corpus_path(path: str) -> Path:
    """``path`` made absolute, if it names a ``.py`` file under ``$MULTISWARM_DEMO_CORPUS``.

    ``..`` is resolved first, and the file's folder after symbolic links must lie under the
    corpus too (``corpus_files`` does not descend into linked folders either). A linked *file*
    in the corpus is read, as the single-process reference reads it: the operator put it there.

    Raises
    ------
    HandlerError
        The variable is unset, or the path lies outside it or is not a ``.py`` file. The task
        ends dead: retrying cannot make it allowed.
    """
    root = os.environ.get(CORPUS_ENV)
    if not root:
        raise HandlerError(
            f"demo handlers read files only under ${CORPUS_ENV}, which is not set on this worker"
        )
    top, absolute = Path(os.path.abspath(root)), Path(os.path.abspath(path))
    if (
        absolute.suffix != ".py"
        or not absolute.is_relative_to(top)
        or not absolute.parent.resolve().is_relative_to(top.resolve())
    ):
        raise HandlerError(f"{path!r} is not a .py file under ${CORPUS_ENV}")
    return absolute


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


def _parse(path: str, data: bytes) -> dict[str, Any]:
    counts, error = count_identifiers(data)
    return {"path": path, "counts": counts, "error": error}


def _compress(path: str, data: bytes) -> dict[str, Any]:
    return {"path": path, "raw": len(data), "compressed": len(zlib.compress(data, ZLIB_LEVEL))}


@handler
def parse_file(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return _parse(payload["path"], corpus_path(payload["path"]).read_bytes())


@handler
def compress_file(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return _compress(payload["path"], corpus_path(payload["path"]).read_bytes())


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
    return {
        "counts": dict(counts),
        "raw": raw,
        "compressed": compressed,
        "files": files,
        "errors": sorted(errors),
    }


@handler
def reduce_group(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return merge(ctx.dependencies[d] for d in sorted(ctx.dependencies))


def summarize(group: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, int] = group["counts"]
    canonical = json.dumps(sorted(counts.items()), separators=(",", ":")).encode()
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return {
        "files": group["files"],
        "identifiers": sum(counts.values()),
        "distinct": len(counts),
        "top": [list(kv) for kv in top],
        "digest": hashlib.sha256(canonical).hexdigest(),
        "raw_bytes": group["raw"],
        "compressed_bytes": group["compressed"],
        "ratio": round(group["compressed"] / group["raw"], 6) if group["raw"] else 0.0,
        "tokenize_errors": len(group["errors"]),
    }


@handler
def reduce_final(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return summarize(merge(ctx.dependencies[d] for d in sorted(ctx.dependencies)))


def reference(paths: Sequence[Path]) -> dict[str, Any]:
    """The whole computation in this process: the answer the distributed run must equal."""
    parts: list[dict[str, Any]] = []
    for p in paths:
        data = p.read_bytes()
        parts.append(_parse(str(p), data))
        parts.append(_compress(str(p), data))
    return summarize(merge(parts))


@handler
def noop(payload: Any, ctx: TaskContext) -> Any:
    """The no-op handler of the throughput benchmark."""
    return payload


@handler
def fail_always(payload: Any, ctx: TaskContext) -> Any:
    """A handler that always raises (retry and dead-letter tests)."""
    raise RuntimeError(f"failing on purpose (attempt {ctx.attempt})")


@handler
def sleep_then_return(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Sleeps ``payload['seconds']`` then returns the payload (crash and lease tests)."""
    import time

    time.sleep(float(payload.get("seconds", 1.0)))
    return {"task": ctx.task_id, "slept": payload.get("seconds", 1.0)}


@handler
def burn_cpu(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Busy-loops for ``payload['seconds']`` (heartbeats must continue meanwhile)."""
    import time

    end = time.perf_counter() + float(payload.get("seconds", 1.0))
    n = 0
    while time.perf_counter() < end:
        n += 1
    return {"task": ctx.task_id, "loops": n}


@handler
def steps(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """``payload['steps']`` (10) steps of ``payload['seconds']`` (0.5) each, reporting
    progress after each (``ctx.progress``: a long task a live view shows moving)."""
    import time

    n = int(payload.get("steps", 10))
    for i in range(n):
        time.sleep(float(payload.get("seconds", 0.5)))
        ctx.progress((i + 1) / n, f"step {i + 1} of {n}")
    return {"task": ctx.task_id, "steps": n}
