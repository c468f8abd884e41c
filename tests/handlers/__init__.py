"""Task handlers for tests, run by real agent processes (allowed with ``tests.handlers.``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def fail_while_file_exists(payload: dict[str, Any], ctx: Any) -> str:
    """Fail while ``payload["flag"]`` exists: a test removes it to let a retry succeed."""
    if Path(payload["flag"]).exists():
        raise RuntimeError(f"flag {payload['flag']} is set")
    return "done"
