"""Every script says why a retry of it is safe, and docs/decisions.md says the same."""

from __future__ import annotations

from pathlib import Path

from multiswarm.script_library import BY_NATURE, REQUEST_ID, lua_dir, sources

ROOT = Path(__file__).resolve().parents[2]


def test_every_script_is_classified_once() -> None:
    names = {p.stem for p in lua_dir().glob("*.lua")}
    assert set(REQUEST_ID) | set(BY_NATURE) == names
    assert not set(REQUEST_ID) & set(BY_NATURE)


def test_request_id_scripts_are_wrapped() -> None:
    for name, source in sources().items():
        wrapped = "return with_request_id(request_body" in source
        assert wrapped == (name in REQUEST_ID), name


def test_decisions_name_every_script() -> None:
    text = (ROOT / "docs" / "decisions.md").read_text()
    section = text[text.index("by a request id or by") :]
    missing = [n for n in (*REQUEST_ID, *BY_NATURE) if f"`{n}`" not in section]
    assert not missing, missing
