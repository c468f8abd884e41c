"""Lua scripts: read once per process from ``scripts/lua``, bound per client, called by SHA.

Each ``<verb>_<noun>.lua`` is one atomic operation; the files of ``lib/`` (helpers and the state
machines) are prepended to each, in name order, so the text Redis sees is fixed at load time and
never built from user input. redis-py's ``Script`` calls EVALSHA and reloads on NOSCRIPT (e.g.
after a Redis restart). Error replies ``"<CODE> <detail>"`` become typed errors here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import redis.exceptions
from redis.commands.core import AsyncScript

from multiswarm import errors
from multiswarm.connection import Client, with_retry

T = TypeVar("T")


def lua_dir() -> Path:
    """Folder holding the ``.lua`` files: inside the installed package, else the source tree."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "lua", here.parent / "scripts" / "lua"):
        if (candidate / "lib").is_dir():
            return candidate
    raise errors.ConfigError(f"Lua scripts not found next to {here}")


@cache
def sources() -> dict[str, str]:
    """Script name -> full source (lib prelude + body), read once per process."""
    root = lua_dir()
    prelude = "\n".join(p.read_text() for p in sorted((root / "lib").glob("*.lua")))
    return {p.stem: prelude + "\n" + p.read_text() for p in sorted(root.glob("*.lua"))}


_ERRORS: dict[str, type[errors.ScriptError]] = {
    "NOT_FOUND": errors.NotFound,
    "ILLEGAL_TRANSITION": errors.IllegalTransition,
    "ALREADY_EXISTS": errors.AlreadyExists,
    "CAPACITY_EXCEEDED": errors.CapacityExceeded,
    "STALE_EPOCH": errors.StaleEpoch,
    "VERSION_CONFLICT": errors.VersionConflict,
    "UNKNOWN_DEPENDENCY": errors.UnknownDependency,
    "BAD_REQUEST": errors.BadRequest,
    "WORKER_UNKNOWN": errors.WorkerUnknown,
    "NOT_INTERRUPTED": errors.NotInterrupted,
    "STALE_PLAN": errors.StalePlan,
    "RESOURCE_EXHAUSTED": errors.ResourceExhausted,
    "NOT_ELIGIBLE": errors.NotEligible,
}


def translate(exc: redis.exceptions.ResponseError) -> errors.MultiswarmError:
    """Turn a script's error reply into the matching :class:`~multiswarm.errors.ScriptError`."""
    text = str(exc)
    # Redis may prefix the reply with the script location; the code is the first CAPS word.
    words = text.split()
    for i, word in enumerate(words):
        if word in _ERRORS:
            return _ERRORS[word](word, " ".join(words[i + 1 :]))
    return errors.ScriptError("SCRIPT_ERROR", text)


class Scripts:
    """The scripts bound to one client. ``await scripts.call("claim_tasks", keys, args)``.

    Parameters
    ----------
    client:
        redis-py asyncio client (or cluster client).
    reconnect_timeout_s:
        How long connection errors are retried with backoff before RedisUnavailable.
    """

    def __init__(self, client: Client, reconnect_timeout_s: float = 60.0) -> None:
        self.client = client
        self.reconnect_timeout_s = reconnect_timeout_s
        self._bound: dict[str, AsyncScript] = {}

    def _script(self, name: str) -> AsyncScript:
        script = self._bound.get(name)
        if script is None:
            try:
                text = sources()[name]
            except KeyError:
                raise errors.ConfigError(f"no Lua script named {name!r}") from None
            script = self._bound[name] = self.client.register_script(text)
        return script

    async def call(self, name: str, keys: list[str], args: list[Any], retry: bool = True) -> Any:
        """Run script ``name``; retry connection errors (unless ``retry`` is False: best-effort
        callers that would rather drop than wait); translate refusals.

        Raises
        ------
        ScriptError
            (or a subclass) when the script refused the operation.
        RedisUnavailable
            Redis stayed unreachable for ``reconnect_timeout_s``.
        """
        script = self._script(name)

        async def run() -> Any:
            try:
                return await script(keys=keys, args=args)
            except redis.exceptions.ResponseError as e:
                if isinstance(e, redis.exceptions.NoScriptError):
                    raise
                raise translate(e) from e

        if not retry:
            return await run()
        return await with_retry(run, self.reconnect_timeout_s)

    async def read(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run a plain read (``lambda: client.hget(...)``) with the same reconnect backoff."""
        return await with_retry(fn, self.reconnect_timeout_s)
