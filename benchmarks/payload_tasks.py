"""Handler of benchmarks/bench_payloads.py (importable by agent processes: its directory is on
their import path)."""

from __future__ import annotations

from typing import Any


def size(payload: dict[str, Any], ctx: Any) -> int:
    """Touch the input and return a small result: the blob's length."""
    return len(payload["blob"])
