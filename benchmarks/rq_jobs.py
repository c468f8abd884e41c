"""The RQ baseline's job (importable by `rq worker` run from this folder)."""

from typing import Any


def noop(payload: Any) -> Any:
    return payload
