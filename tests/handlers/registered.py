"""A handler module registered the documented way (``@multiswarm.handler``): a worker runs its
handlers only when started with ``--import tests.handlers.registered``."""

from __future__ import annotations

import os
from typing import Any

import multiswarm


@multiswarm.handler
def where(payload: Any, ctx: Any) -> dict[str, Any]:
    """The process that ran it, and the payload back."""
    return {"pid": os.getpid(), "payload": payload}


@multiswarm.handler("tests.handlers:renamed")
def named(payload: Any, ctx: Any) -> str:
    """Registered under a name of its own."""
    return "renamed"
