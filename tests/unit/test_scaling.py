from __future__ import annotations

import pytest

from multiswarm.registry import split_scaling


@pytest.mark.parametrize(
    ("python", "external", "target", "expected"),
    [
        (3, 1, 14, (10, 4)),  # +10 members: 7 Python, 3 external
        (7, 3, 20, (14, 6)),
        (7, 3, 5, (2, 3)),  # shrink: Python first...
        (7, 3, 2, (1, 1)),  # ...down to one, then external, keeping one of each
        (1, 1, 2, (1, 1)),
        (1, 1, 3, (2, 1)),  # round(0.3) == 0 external added
        (1, 1, 5, (3, 2)),  # round(0.9) == 1
    ],
)
def test_split(python: int, external: int, target: int, expected: tuple[int, int]) -> None:
    got = split_scaling(python, external, target)
    assert got == expected and sum(got) == target and min(got) >= 1


def test_without_external_members_and_minimums() -> None:
    assert split_scaling(2, 0, 5, has_external=False) == (5, 0)
    assert split_scaling(5, 0, 1, has_external=False) == (1, 0)
    with pytest.raises(ValueError):
        split_scaling(2, 1, 1)
    with pytest.raises(ValueError):
        split_scaling(2, 0, 0, has_external=False)
