"""Names a package loads on first access (PEP 562 module ``__getattr__``), so importing it
stays cheap: a worker or an agent process imports only what it uses (decision 55)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_getattr(
    package: str, table: Mapping[str, str], namespace: dict[str, object]
) -> Callable[[str], object]:
    """The ``__getattr__`` of module ``package``: name -> the module in ``table`` (absolute, or
    relative to ``package`` with a leading dot) that defines it, imported on first access and
    kept in ``namespace`` (the module's ``globals()``) so later lookups skip it. Raises
    AttributeError for a name not in ``table``."""

    def __getattr__(name: str) -> object:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    return __getattr__
