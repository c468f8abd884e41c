"""One error tree: every exception the package raises is a MultiswarmError (a builtin base is
added where Python convention expects one, e.g. ValueError), and no bare builtin is raised."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import multiswarm
from multiswarm.errors import MultiswarmError

PACKAGE = Path(multiswarm.__file__).resolve().parent
#: Raised on purpose: the demo's always-failing handler, and the in-handler stop signal (a
#: BaseException so a handler's ``except Exception`` cannot swallow it).
ALLOWED = {("demo_tasks.py", "RuntimeError")}
BUILTINS = {"ValueError", "TypeError", "RuntimeError", "KeyError", "Exception", "LookupError"}


def test_no_bare_builtin_is_raised() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                name = getattr(node.exc.func, "id", None)
                if name in BUILTINS and (path.name, name) not in ALLOWED:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}")
    assert not found, found


def test_every_exception_class_is_in_the_tree() -> None:
    outside = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        if rel.name == "__main__":
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        module = importlib.import_module(".".join(parts))
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not issubclass(cls, BaseException):
                continue
            if not issubclass(cls, MultiswarmError) and name != "TaskStopped":
                outside.append(f"{module.__name__}.{name}")
    assert not outside, outside
