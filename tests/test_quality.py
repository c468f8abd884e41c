"""The house rules, checked by the same command as the tests: ruff lint, ruff format and
``mypy --strict`` over the package, the tests and the benchmarks."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = ["multiswarm", "tests", "benchmarks"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    for tool in ("ruff", "mypy"):
        if importlib.util.find_spec(tool) is None:
            pytest.fail(f"{tool} is missing: pip install -e '.[test]' installs it")


def test_ruff_lint() -> None:
    proc = run("ruff", "check", *TREES)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_ruff_format() -> None:
    proc = run("ruff", "format", "--check", ".")  # markdown code blocks too
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_mypy_strict() -> None:
    proc = run("mypy", "--strict", *TREES)
    assert proc.returncode == 0, proc.stdout[-4000:]
