"""A TCP proxy in front of a private redis-server that can lose replies on purpose.

``drop_reply_to(b"claim")`` arms it: the next request whose bytes contain the pattern is sent
on to Redis (so the command runs), but its reply is thrown away and the client's connection is
closed — what a network cut right after the server acted looks like to the client. The client
then retries on a new connection, which is exactly the case idempotent scripts must survive.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class ReplyDroppingProxy:
    """Listens on a free loopback port and forwards to ``127.0.0.1:upstream_port``."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._patterns: list[bytes] = []
        self.dropped = 0
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def drop_reply_to(self, pattern: bytes, times: int = 1) -> None:
        """Lose the reply of the next ``times`` requests containing ``pattern``."""
        with self._lock:
            self._patterns += [pattern] * times

    def _take(self, data: bytes) -> bool:
        with self._lock:
            for i, p in enumerate(self._patterns):
                if p in data:
                    del self._patterns[i]
                    return True
        return False

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            doomed = threading.Event()
            threading.Thread(target=self._up, args=(client, upstream, doomed), daemon=True).start()
            threading.Thread(
                target=self._down, args=(upstream, client, doomed), daemon=True
            ).start()

    def _up(self, client: socket.socket, upstream: socket.socket, doomed: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                if self._take(data):
                    doomed.set()
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(upstream)

    def _down(
        self, upstream: socket.socket, client: socket.socket, doomed: threading.Event
    ) -> None:
        try:
            while data := upstream.recv(65536):
                if doomed.is_set():
                    with self._lock:
                        self.dropped += 1
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)

    def close(self) -> None:
        self._closed = True
        _close(self._listener)

    def __enter__(self) -> ReplyDroppingProxy:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()
