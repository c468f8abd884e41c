"""Private Redis Cluster and Sentinel groups from the ``redis-server`` on PATH, for tests and
benchmarks: random loopback ports, temp dirs, faults injected by killing members.

A cluster is N masters (each with R replicas) joined by ``redis-cli --cluster create``; a
Sentinel group is one master, its replicas and three Sentinels with a quorum of two, tuned to
fail over within seconds (``down-after-milliseconds`` 1000, ``failover-timeout`` 5000).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis
import redis.exceptions

from multiswarm.errors import RedisServerError
from multiswarm.redis_server import RedisServer, answers_ping, find_server_binary, free_port


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, both below the kernel's
    ephemeral range (see :func:`free_port`), as Redis requires of the bus (below 55536)."""
    return free_port(low=10000, bus_offset=10000)


def _cli() -> str:
    found = shutil.which("redis-cli") or str(Path(find_server_binary()).with_name("redis-cli"))
    if not Path(found).exists():
        raise RedisServerError("redis-cli not found next to redis-server (package redis-tools)")
    return found


def _ask(port: int, *command: str) -> str:
    """One command to the node at ``port``; its reply as text ('' when it does not answer)."""
    client = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)
    try:
        reply = client.execute_command(*command)  # type: ignore[no-untyped-call]
    except (redis.exceptions.RedisError, OSError):
        return ""
    finally:
        client.close()
    if isinstance(reply, list):
        return " ".join(r.decode() if isinstance(r, bytes) else str(r) for r in reply)
    if isinstance(reply, dict):
        return "\n".join(f"{k}:{v}" for k, v in reply.items())
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _wait(condition: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RedisServerError(f"{condition} not reached within {timeout_s} s")


class RedisClusterGroup:
    """``masters`` masters with ``replicas`` replicas each, as one Redis Cluster.

    Parameters
    ----------
    masters:
        Number of masters (at least 3: ``redis-cli --cluster create`` refuses fewer).
    replicas:
        Replicas per master.
    """

    def __init__(self, masters: int = 3, replicas: int = 0) -> None:
        self.masters, self.replicas = masters, replicas
        self.nodes = [
            RedisServer(
                port=cluster_port(),
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ],
            )
            for _ in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def _ok(self) -> bool:
        live = [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        return all("cluster_state:ok" in _ask(n.port, "CLUSTER", "INFO") for n in live)

    def _replicas_synced(self) -> bool:
        # a replica that never finished its first sync is not eligible for promotion: a master
        # killed before that stays failed (cluster_state:ok comes earlier than the syncs)
        synced = sum(
            "master_link_status:up" in _ask(n.port, "INFO", "replication") for n in self.nodes
        )
        return synced == self.masters * self.replicas

    def start(self, timeout_s: float = 30.0) -> RedisClusterGroup:
        try:
            for n in self.nodes:
                n.start()
            subprocess.run(
                [
                    _cli(),
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{n.port}" for n in self.nodes),
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=timeout_s,
            )
            _wait("cluster_state:ok on every node", self._ok, timeout_s)
            _wait("every replica in sync with its master", self._replicas_synced, timeout_s)
        except BaseException:
            self.cleanup()
            raise
        return self

    def master_ports(self) -> list[int]:
        """Ports of the nodes that are masters now (a failover changes them)."""
        return [
            n.port
            for n in self.nodes
            if n.proc is not None
            and n.proc.poll() is None
            and "role:master" in _ask(n.port, "INFO", "replication")
        ]

    def cleanup(self) -> None:
        for n in self.nodes:
            n.cleanup()

    def __enter__(self) -> RedisClusterGroup:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()


class SentinelGroup:
    """One master, ``replicas`` replicas and three Sentinels watching service ``mymaster``."""

    SERVICE = "mymaster"

    def __init__(self, replicas: int = 1) -> None:
        # no 5 s pause before the first full sync (repl-diskless-sync-delay's default)
        self.master = RedisServer(extra_args=["--repl-diskless-sync-delay", "0"])
        self.replicas = [
            RedisServer(extra_args=["--replicaof", "127.0.0.1", str(self.master.port)])
            for _ in range(replicas)
        ]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.dirs: list[Path] = []

    @property
    def url(self) -> str:
        """``redis+sentinel://`` naming every Sentinel and the service."""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/0"

    def _synced(self) -> bool:
        return all(
            "master_link_status:up" in _ask(r.port, "INFO", "replication") for r in self.replicas
        )

    def _watching(self) -> bool:
        return all(
            str(self.master.port) in _ask(p, "SENTINEL", "get-master-addr-by-name", self.SERVICE)
            for p in self.sentinel_ports
        )

    def _spawn_sentinel(self, i: int, timeout_s: float) -> None:
        """Start Sentinel ``i`` and wait until it answers; on a port taken meanwhile (it exits),
        again on a fresh port."""
        last = ""  # the log of the last one that exited
        for _ in range(5):
            port = self.sentinel_ports[i]
            d = Path(self.master.dir) / f"sentinel-{port}"
            d.mkdir()
            conf = d / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {d}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
                f"sentinel failover-timeout {self.SERVICE} 5000\n"
                f"sentinel parallel-syncs {self.SERVICE} 1\n"
                f"logfile {d / 'sentinel.log'}\n"
            )
            proc = subprocess.Popen(
                [find_server_binary(), str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.sentinels.append(proc)
            deadline = time.monotonic() + timeout_s
            while proc.poll() is None and time.monotonic() < deadline:
                if answers_ping(port):
                    return
                time.sleep(0.05)
            if proc.poll() is None:
                raise RedisServerError(f"Sentinel on port {port} not answering in {timeout_s} s")
            log = d / "sentinel.log"
            last = log.read_text()[-300:] if log.exists() else ""
            self.sentinel_ports[i] = free_port()
        raise RedisServerError(f"no Sentinel started in 5 tries; the last one logged: {last}")

    def start(self, timeout_s: float = 30.0) -> SentinelGroup:
        try:
            self.master.start()
            for r in self.replicas:
                r.start()
            _wait("replicas in sync", self._synced, timeout_s)
            for i in range(len(self.sentinel_ports)):
                self._spawn_sentinel(i, timeout_s)
            _wait("sentinels watching the master", self._watching, timeout_s)
        except BaseException:
            self.cleanup()
            raise
        return self

    def current_master_port(self) -> int:
        """The master's port as the Sentinels see it now (changes after a failover)."""
        for p in self.sentinel_ports:
            reply = _ask(p, "SENTINEL", "get-master-addr-by-name", self.SERVICE)
            ports = [int(x) for x in reply.split() if x.isdigit() and int(x) > 1000]
            if ports:
                return ports[-1]
        raise RedisServerError("no Sentinel knows the master")

    def cleanup(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for r in self.replicas:
            r.cleanup()
        self.master.cleanup()

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()
