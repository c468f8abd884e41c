"""Defect 9: ``demo --corpus DIR`` found no files when DIR lay under a ``site-packages`` path.

The filter meant to keep installed packages out of the default corpus (the standard library)
looked at every part of the absolute path, so a corpus inside any virtualenv or installed
package was empty. Only the part below the corpus root may be filtered.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from multiswarm.demo import corpus_files


def _tree(root: Path) -> None:
    (root / "pkg").mkdir(parents=True)
    (root / "top.py").write_text("x = 1\n")
    (root / "pkg" / "mod.py").write_text("def f():\n    return 2\n")


def test_corpus_under_site_packages_finds_its_files(tmp_path: Path) -> None:
    for parent in ("site-packages", "dist-packages"):
        root = tmp_path / "venv" / "lib" / "python3" / parent / "project"
        _tree(root)
        found_root, files = corpus_files(str(root))
        assert found_root == root
        assert [p.relative_to(root).as_posix() for p in files] == ["pkg/mod.py", "top.py"]


def test_installed_packages_below_the_corpus_are_still_left_out(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    _tree(root)
    (root / "site-packages" / "dep").mkdir(parents=True)
    (root / "site-packages" / "dep" / "x.py").write_text("y = 2\n")
    (root / "dist-packages").mkdir()
    (root / "dist-packages" / "z.py").write_text("z = 3\n")
    _, files = corpus_files(str(root))
    assert [p.relative_to(root).as_posix() for p in files] == ["pkg/mod.py", "top.py"]


def test_default_corpus_is_the_standard_library_without_site_packages() -> None:
    root, files = corpus_files(None)
    assert root == Path(sysconfig.get_paths()["stdlib"])
    assert files and all("site-packages" not in p.relative_to(root).parts for p in files)
