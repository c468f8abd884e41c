"""local_system.api_answers: the demo announces the dashboard only once the API answers."""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
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


class _Unhealthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)  # as /healthz while Redis is not reached
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_an_api_that_starts_late_is_waited_for(
    api_process: RoleProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a proxy in the environment (nothing listens there) must not take the loopback request
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    port = free_port()
    # bound only after 0.5 s: until then connections are refused
    server = http.server.HTTPServer(("127.0.0.1", port), _Unhealthy, bind_and_activate=False)

    def bind_late() -> None:
        time.sleep(0.5)
        server.server_bind()
        server.server_activate()
        server.serve_forever()

    threading.Thread(target=bind_late, daemon=True).start()
    try:
        started = time.monotonic()
        assert api_answers(api_process, port, timeout_s=20)
        assert time.monotonic() - started >= 0.4  # it waited for the late start
    finally:
        server.shutdown()
        server.server_close()


def test_nothing_listening_is_not_an_answer(api_process: RoleProcess) -> None:
    assert not api_answers(api_process, free_port(), timeout_s=0.5)


def test_an_api_that_exited_is_not_waited_for() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    started = time.monotonic()
    assert not api_answers(RoleProcess("api", proc, None), free_port(), timeout_s=30)
    assert time.monotonic() - started < 5
