"""local_system.api_answers: the demo announces the dashboard only once the API answers."""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator

import pytest

from multiswarm.launcher import RoleProcess
from multiswarm.local_system import api_answers
from multiswarm.redis_server import free_port


@pytest.fixture
def api_process() -> Iterator[RoleProcess]:
    """A live child standing in for ``run api`` (only its liveness is read)."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield RoleProcess("api", proc, None)
    finally:
        proc.kill()
        proc.wait()


class _StartingApi(http.server.BaseHTTPRequestHandler):
    """Drops the first ``silent`` connections unanswered (an API still starting), then answers
    503, as ``/healthz`` does while Redis is not reached."""

    silent = 2
    connections = 0

    def handle(self) -> None:
        type(self).connections += 1
        if type(self).connections > self.silent:
            super().handle()

    def do_GET(self) -> None:
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def starting_api() -> Iterator[tuple[int, type[_StartingApi]]]:
    handler = type("Handler", (_StartingApi,), {"connections": 0})
    port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield port, handler
    finally:
        server.shutdown()
        server.server_close()


def test_an_api_still_starting_is_asked_again_until_it_answers(
    api_process: RoleProcess,
    starting_api: tuple[int, type[_StartingApi]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a proxy in the environment (nothing listens there) must not take the loopback request
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    port, handler = starting_api
    assert api_answers(api_process, port, timeout_s=20)
    assert handler.connections == handler.silent + 1  # asked until the 503, then no more


def test_nothing_listening_is_not_an_answer(api_process: RoleProcess) -> None:
    assert not api_answers(api_process, free_port(), timeout_s=0.5)


def test_an_api_that_exited_is_not_asked(starting_api: tuple[int, type[_StartingApi]]) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    port, handler = starting_api
    handler.silent = 0  # it would answer at once: only the exit says no
    assert not api_answers(RoleProcess("api", proc, None), port, timeout_s=30)
    assert handler.connections == 0
