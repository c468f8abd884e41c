"""The script layer: one reply decoder, every script declared once, no way around it."""

from __future__ import annotations

import ast
import os
import pkgutil
import re
from pathlib import Path

import msgspec
import pytest

import multiswarm.ops
from multiswarm.errors import ConfigError, MultiswarmError, ScriptReplyError
from multiswarm.keys import check_id
from multiswarm.ops.script import DECLARED, Script, decode
from multiswarm.script_library import lua_dir
from multiswarm.scripts import request_id

PACKAGE = Path(multiswarm.ops.__file__).resolve().parents[1]
#: The script layer and the key builders: the only modules that may call scripts by name and
#: spell key strings.
LAYER = {"scripts.py", "keys.py", "ops"}


class Row(msgspec.Struct, array_like=True):
    id: str
    payload: bytes
    n: int
    ok: bool
    deps: list[str]


def test_decode_follows_the_declared_type() -> None:
    raw = [[b"t1", b"\x81\xa1a\x01", b"7", 1, [b"d1", b"d2"]]]
    assert decode(raw, list[Row]) == [Row("t1", b"\x81\xa1a\x01", 7, True, ["d1", "d2"])]
    assert decode(b"completed", str) == "completed"
    assert decode(3, str) == "3"
    assert decode(b"42", int) == 42
    assert decode(b"raw", bytes) == b"raw" and decode("raw", bytes) == b"raw"
    assert decode([b"cpu", b"2", b"mem", 3], dict[str, int]) == {"cpu": 2, "mem": 3}
    assert decode({b"a": b"1"}, dict[str, int]) == {"a": 1}
    assert decode([b"x", None], list[bytes | None]) == [b"x", None]
    assert decode([1, [b"a", b"b"]], tuple[int, list[str]]) == (1, ["a", "b"])


@pytest.mark.parametrize(
    ("raw", "tp"),
    [
        (b"abc", int),  # not a number
        ([b"a", b"1", b"b"], dict[str, int]),  # odd key/value list
        (b"a", list[str]),  # a scalar where a list is declared
        ([b"t1", b"x"], Row),  # too few fields
        ([[b"t1"]], list[str]),  # nested where flat is declared
        (None, str),
    ],
)
def test_a_reply_of_another_shape_is_a_typed_error(raw: object, tp: type[object]) -> None:
    with pytest.raises(ScriptReplyError) as caught:
        decode(raw, tp)
    assert isinstance(caught.value, MultiswarmError)


def test_every_script_is_declared_once() -> None:
    # importing the package declares every family's scripts (the loader relies on it)
    families = {i.name for i in pkgutil.iter_modules(multiswarm.ops.__path__)}
    assert families <= set(multiswarm.ops.__all__)
    assert set(DECLARED) == {p.stem for p in lua_dir().glob("*.lua")}
    with pytest.raises(ConfigError):
        Script("claim_tasks", list[str], request_id=True)  # a second declaration
    with pytest.raises(ConfigError):
        Script("unclassified", int)  # says neither why a retry is safe
    with pytest.raises(ConfigError):
        Script("both", int, request_id=True, by_nature="a repeat is harmless")
    with pytest.raises(ConfigError):
        Script("replays", int, custom_replay=True, by_nature="custom replay needs a request id")
    assert "unclassified" not in DECLARED and "both" not in DECLARED


#: ``"{ns}:tasks"``-like literals: a hash tag, or the namespace prefix followed by a key part.
KEY_LITERAL = re.compile(r"\{[^}]*\}:|^\}:|^swarm:[a-z]")


def violations(source: str) -> list[str]:
    """Raw script calls and key strings in one module's source (outside the layer)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in ("call", "call_many", "_script"):
            base = node.value
            name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
            if name.endswith("scripts"):
                found.append(f"{node.lineno}: scripts.{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "call"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(f"{node.lineno}: a script called by name")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # a key has no whitespace (docstrings may name keys)
            if KEY_LITERAL.search(node.value) and not re.search(r"\s", node.value):
                found.append(f"{node.lineno}: key string {node.value!r}")
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                str(v.value) if isinstance(v, ast.Constant) else "{x}" for v in node.values
            )
            if re.search(r"^\{x\}:(?:tasks|index|swarms|state|leader)|\}:(?:tasks|votes)", text):
                found.append(f"{node.lineno}: key f-string")
    return found


def test_the_check_sees_planted_violations() -> None:
    planted = (
        "async def f(self, scripts):\n"
        "    await self.scripts.call('claim_tasks', [], [])\n"
        "    await scripts.call('x', [], [])\n"
        "    await self._scripts.call_many('x', [])\n"
        "    await runner.call('claim_tasks', [], [])\n"
        "    self.scripts._script('x')\n"
        "    key = '{swarm}:tasks'\n"
        "    other = f'{ns}:tasks:ready'\n"
    )
    assert {int(v.split(":")[0]) for v in violations(planted)} == set(range(2, 9))


def test_only_the_script_layer_calls_scripts_or_spells_keys() -> None:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in LAYER:
            continue
        if hits := violations(path.read_text()):
            found[str(rel)] = hits
    assert found == {}


def test_request_ids_are_unique_in_a_process_and_apart_in_a_forked_child() -> None:
    ids = [request_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    assert all(check_id(i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its counter starts again, under a new prefix
        os.write(write, request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 200).decode()
    os.close(read)
    os.close(write)
    prefix = ids[0].split("-")[0]
    assert child.split("-")[0] != prefix and child not in ids
