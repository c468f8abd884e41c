"""What a Lua script's header declares to the loader (:mod:`multiswarm.scripts`).

``-- prefetch: KEYS[i] KEYS[j] ...`` lines name string keys a request-id script reads:
``with_request_id`` (lib/01_common.lua) reads them together with the request key in one
``MGET`` instead of one ``GET`` each (decision 83). Only keys the script never writes before it
reads them may be named: ``read_string`` hands out the value of the call's start.
"""

from __future__ import annotations

import re

from multiswarm import errors

_LINE = re.compile(r"^-- prefetch:(.*)$", re.M)
_KEY = re.compile(r"KEYS\[([1-9][0-9]*)\]")


def prefetch_keys(name: str, body: str) -> list[int]:
    """The ``KEYS`` indexes script ``name`` prefetches, in order, each once.

    Raises
    ------
    ConfigError
        A prefetch line names something other than ``KEYS[<n>]``.
    """
    out: list[int] = []
    for line in _LINE.findall(body):
        words = line.split()
        for word in words:
            found = _KEY.fullmatch(word)
            if found is None:
                raise errors.ConfigError(f"script {name}: prefetch names {word!r}, not KEYS[n]")
            if int(found.group(1)) not in out:
                out.append(int(found.group(1)))
    return out


def prefetch_arg(name: str, body: str) -> str:
    """The third argument of ``with_request_id`` for script ``name``: a Lua table of the keys
    it prefetches (``{KEYS[12], KEYS[28]}``), or ``nil``."""
    keys = prefetch_keys(name, body)
    if not keys:
        return "nil"
    return "{" + ", ".join(f"KEYS[{i}]" for i in keys) + "}"
