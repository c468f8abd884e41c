"""``python -m tests.faults.faulty_worker <multiswarm-cli args>``: the real CLI, in which every
claim of tasks fails with an exception the worker does not expect (an unexpected reply, a bug).
"""

from __future__ import annotations

from typing import Any

from multiswarm import tasks
from multiswarm.cli import cli


async def _claim(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("injected fault")


if __name__ == "__main__":
    tasks.TaskStore.claim = _claim  # type: ignore[method-assign]
    cli(prog_name="multiswarm-cli")
