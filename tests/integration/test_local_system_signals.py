"""``up`` and ``demo`` under a signal at the wrong moment (decision 148 (8)): the private
redis-server a signal interrupts while it starts is stopped, and a teardown runs to its end
with the signal delivered afterwards."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from multiswarm.config import Settings
from multiswarm.local_system import ensure_redis, signals_held
from multiswarm.redis_server import RedisServer, free_port


def test_a_signal_while_the_private_redis_starts_leaves_no_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`server.start()` came before the `try` that stops it: a Ctrl-C or SIGTERM raised while
    it started (up and demo raise the first one) left redis-server running."""
    started: list[RedisServer] = []
    real_start = RedisServer.start

    def start_then_interrupted(self: RedisServer, *args: Any, **kwargs: Any) -> RedisServer:
        real_start(self, *args, **kwargs)
        started.append(self)
        raise KeyboardInterrupt  # the signal, as it lands at the end of the start

    monkeypatch.setattr(RedisServer, "start", start_then_interrupted)
    # nothing answers there, and nothing is configured: a private server is started
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_url_explicit=False)
    with pytest.raises(KeyboardInterrupt), ensure_redis(settings, echo=lambda _line: None):
        pass
    assert len(started) == 1
    proc = started[0].proc
    assert proc is not None and proc.poll() is not None  # stopped, not left running


def test_a_signal_during_a_held_teardown_comes_after_it() -> None:
    """`demo`'s teardown runs with SIGINT and SIGTERM held: a SIGTERM raised in it (by the
    handler `up` and `demo` install) cut `stop_all()` short."""
    seen: list[str] = []

    def on_term(_signum: int, _frame: object) -> None:
        seen.append("signal")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # room for a signal that is not held to act (before: it did)
            seen.append("teardown done")
        # (raised again as the block ends: its handler has run by now)
        assert seen == ["teardown done", "signal"]
    finally:
        signal.signal(signal.SIGTERM, previous)
