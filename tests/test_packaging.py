"""The built wheel ships every Lua script and a script loader that finds them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_contains_every_lua_script(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("multiswarm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"multiswarm/lua/{p.relative_to(ROOT / 'scripts' / 'lua')}"
        for p in (ROOT / "scripts" / "lua").rglob("*.lua")
    }
    assert expected and expected <= names, sorted(expected - names)
    assert "multiswarm/py.typed" in names
    # the dashboard's files ship in the package (no CDN)
    assert {f"multiswarm/http/static/{f}" for f in ("index.html", "app.js", "app.css")} <= names
    # installed elsewhere, the loader finds the scripts inside the package
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from multiswarm import script_library as scripts; "
            "print(scripts.lua_dir()); print(len(scripts.sources()))",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    lua_dir, count = out.stdout.split()
    assert lua_dir.startswith(str(target)) and int(count) == len(
        list((ROOT / "scripts" / "lua").glob("*.lua"))
    )
