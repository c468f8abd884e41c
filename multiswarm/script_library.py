"""The Lua scripts as Redis sees them: read once per process from ``scripts/lua``, loaded as one
function library (what :mod:`multiswarm.scripts` calls).

Each ``<verb>_<noun>.lua`` is one atomic operation; the files of ``lib/`` (helpers and the state
machines) come first, in name order, so the text Redis sees is fixed at load time and never built
from user input. All of it is one function library (``FUNCTION LOAD``, Redis 7): the helpers are
defined once when the library loads, not again on every call as an ``EVALSHA`` script would (13
µs a call, measured: decision 42), and each script is a function called with ``FCALL``. The
library's name carries a hash of its text, so two versions of multiswarm share a server without
replacing each other's functions.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from multiswarm import errors
from multiswarm.ops import DECLARED
from multiswarm.script_headers import prefetch_arg, prefetch_keys


def lua_dir() -> Path:
    """Folder holding the ``.lua`` files: inside the installed package, else the source tree."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "lua", here.parent / "scripts" / "lua"):
        if (candidate / "lib").is_dir():
            return candidate
    raise errors.ConfigError(f"Lua scripts not found next to {here}")


#: Scripts whose outcome is recorded under a request id and replayed on a retry (the prelude's
#: ``with_request_id``): running them twice would act twice (claim, count, book, publish) or
#: answer differently (a replayed submit would say ALREADY_EXISTS). Value: True when the script
#: replays itself from ``REPLAY`` (it records something smaller than its reply). Derived from
#: the declarations in :mod:`multiswarm.ops` (``Script(..., request_id=True)``).
REQUEST_ID: dict[str, bool] = {
    name: s.custom_replay for name, s in sorted(DECLARED.items()) if s.request_id
}

#: Scripts retried without a request id, and why running one twice is harmless
#: (``Script(..., by_nature=...)``).
BY_NATURE: dict[str, str] = {
    name: s.by_nature for name, s in sorted(DECLARED.items()) if not s.request_id
}


#: Scripts whose effect must survive a failover (``Script(..., durable=True)``): with
#: ``wait_replicas`` set they are followed by ``WAIT`` on their own connection.
DURABLE: frozenset[str] = frozenset(name for name, s in DECLARED.items() if s.durable)
#: Durable scripts that take one ``WAIT`` only (``Script(..., wait_once=True)``).
WAIT_ONCE: frozenset[str] = frozenset(name for name, s in DECLARED.items() if s.wait_once)


def _wrapped(name: str, body: str) -> str:
    """The body of a request-id script inside ``with_request_id`` (lib/01_common.lua)."""
    custom = "true" if REQUEST_ID[name] else "false"
    pre = prefetch_arg(name, body)  # keys read with the request key (decision 83)
    return (
        f"local function request_body()\n{body}\nend\n"
        f"return with_request_id(request_body, {custom}, {pre})\n"
    )


@cache
def _parts() -> tuple[str, dict[str, str]]:
    """The prelude (lib/, in name order) and each script's body (request-id ones wrapped)."""
    root = lua_dir()
    prelude = "\n".join(p.read_text() for p in sorted((root / "lib").glob("*.lua")))
    bodies: dict[str, str] = {}
    for p in sorted(root.glob("*.lua")):
        name, body = p.stem, p.read_text()
        if name in REQUEST_ID:
            body = _wrapped(name, body)
        elif prefetch_keys(name, body):
            raise errors.ConfigError(f"script {name} prefetches keys but has no request id")
        elif name not in BY_NATURE:
            raise errors.ConfigError(f"script {name} does not say why a retry is safe")
        bodies[name] = body
    if missing := sorted(set(DECLARED) - set(bodies)):
        raise errors.ConfigError(f"declared scripts without a .lua file: {missing}")
    return prelude, bodies


def sources() -> dict[str, str]:
    """Script name -> full source (lib prelude + body), each one runnable on its own by
    ``EVAL``; what :func:`library` loads, script by script (for reading and tests).

    Raises
    ------
    ConfigError
        A script has no declaration in :mod:`multiswarm.ops` (so it says neither its reply type
        nor why a retry is safe: every script is retried on connection errors), or a
        declaration has no script.
    """
    prelude, bodies = _parts()
    return {name: prelude + "\n" + body for name, body in bodies.items()}


@cache
def library() -> tuple[str, str]:
    """The function library's name and code: ``KEYS`` and ``ARGV`` are upvalues every
    function sets first (function libraries have no such globals), with the per-call state of
    the prelude (``REPLAY``, ``REQUEST``, ``PREFETCH``), then runs its script's body. Raises
    ConfigError as :func:`sources`."""
    prelude, bodies = _parts()
    digest = hashlib.sha1("\0".join([prelude, *bodies.values()]).encode()).hexdigest()[:12]
    name = f"multiswarm_{digest}"
    parts = [f"#!lua name={name}", "local KEYS, ARGV = {}, {}", prelude]
    for script, body in bodies.items():
        parts.append(
            f"redis.register_function('{name}_{script}', function(keys, args)\n"
            "KEYS, ARGV, REPLAY, PREFETCH = keys, args, nil, nil\n"
            "REQUEST.record, REQUEST.none = nil, nil\n"  # (no table a call: decision 83)
            f"{body}\nend)"
        )
    return name, "\n".join(parts)


def function_name(script: str) -> str:
    """The name ``FCALL`` calls script ``script`` by (raises ConfigError for an unknown one)."""
    if script not in _parts()[1]:
        raise errors.ConfigError(f"no Lua script named {script!r}")
    return f"{library()[0]}_{script}"
