"""Explicit handler registration: which functions a worker may run.

A task names the code a worker runs, and whoever can write to Redis can submit one; so, as
Celery, Dramatiq and arq do, a worker runs only the functions registered with
:func:`handler` in the modules it was told to import (``run worker --import myapp.tasks``),
and nothing a task names can make it import anything else. The registry is process-wide and
filled as a side effect of importing those modules: the worker imports them to advertise the
names (the leader routes a task only to swarms that can run it), and each agent process
imports them again before it serves.

Allowing every function under an import prefix (``--allow-handlers myapp.``, RQ's model) stays
available as an opt-in (:mod:`multiswarm.agent_runtime`).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from multiswarm.errors import HandlerError

__all__ = ["DEFAULT_IMPORTS", "handler", "import_handlers", "registered", "registered_names"]

F = TypeVar("F", bound=Callable[..., Any])

#: Modules every worker imports: the package's own handlers (the demo's, the no-op benchmark's).
DEFAULT_IMPORTS: tuple[str, ...] = ("multiswarm.demo_tasks",)
#: What a task may name: ``package.module:function``, the form a registered name takes too.
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*")

_registry: dict[str, Callable[..., Any]] = {}


def _register(fn: F, name: str | None) -> F:
    if not callable(fn):
        raise HandlerError(f"@handler decorates a function, not {fn!r}")
    key = name if name is not None else f"{fn.__module__}:{fn.__qualname__}"
    if not NAME_PATTERN.fullmatch(key):
        raise HandlerError(
            f"handler name {key!r} is not 'package.module:function' (e.g. 'myapp.tasks:parse')"
        )
    known = _registry.get(key)
    if known is not None and known is not fn and _origin(known) != _origin(fn):
        raise HandlerError(f"handler name {key!r} is already registered for {_origin(known)}")
    _registry[key] = fn
    return fn


def _origin(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


@overload
def handler(fn: F, /) -> F: ...
@overload
def handler(name: str | None = None, /) -> Callable[[F], F]: ...
def handler(arg: Any = None, /) -> Any:
    """Register a task handler: ``@handler`` or ``@handler("myapp.tasks:parse")``.

    A handler is ``fn(payload, ctx)`` (or ``async def``); tasks name it by its registered name,
    by default ``module:function`` of where it is defined (``myapp.tasks:parse``). Workers run
    it once they import its module (``multiswarm-cli up --import myapp.tasks``).

    Parameters
    ----------
    arg:
        The function (bare ``@handler``), or the name to register it under, of the form
        ``package.module:function`` (``None``: the default name).

    Returns
    -------
    callable
        The function itself (registration does not wrap it), or a decorator doing that.

    Raises
    ------
    HandlerError
        A malformed name, or a name already registered for another function.
    """
    if callable(arg):
        return _register(arg, None)
    if arg is not None and not isinstance(arg, str):
        raise HandlerError(f"@handler takes a name (str), not {arg!r}")

    def decorate(fn: F) -> F:
        return _register(fn, arg)

    return decorate


def registered(name: str) -> Callable[..., Any] | None:
    """The function registered under ``name`` in this process, or None."""
    return _registry.get(name)


def registered_names() -> list[str]:
    """Every name registered in this process, sorted."""
    return sorted(_registry)


def import_handlers(modules: Iterable[str]) -> list[str]:
    """Import ``modules`` (registering their handlers); return every registered name.

    Raises
    ------
    HandlerError
        A module cannot be imported (its name and the cause in the message).
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as e:  # any error at import time: the worker must not start half-armed
            raise HandlerError(
                f"cannot import handler module {module!r}: {type(e).__name__}: {e} "
                "(is the directory holding it the current one, or on PYTHONPATH?)"
            ) from e
    return registered_names()
