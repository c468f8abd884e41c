"""How ``up`` and ``demo`` stop on Ctrl-C and SIGTERM: the processes they started are stopped
too, never orphaned, and the command ends without a traceback.

Kept apart from ``cli_run.py`` (which uses it) because both commands need the same handlers.
"""

from __future__ import annotations

import signal


class StopSignals:
    """SIGINT and SIGTERM handlers, installed explicitly: a shell may start us with SIGINT
    ignored, and SIGTERM's default would kill this process alone, orphaning its children (and
    a private redis-server).

    Until :meth:`hold`, the first signal raises ``KeyboardInterrupt`` wherever the command is
    (waiting for Redis, driving the demo), so the ``finally`` blocks on the way out stop the
    processes and the private redis-server. After :meth:`hold`, or after that first signal, a
    signal is only recorded in :attr:`received`: the command polls it, and a second Ctrl-C
    cannot cut the stopping short.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._raise = True
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.received.append(signum)
        if self._raise:
            self._raise = False
            raise KeyboardInterrupt

    def hold(self) -> None:
        """From now on only record signals (the caller has processes to stop, and polls)."""
        self._raise = False

    @property
    def name(self) -> str:
        """The first signal received (``SIGTERM``), or ``SIGINT`` when none was: a
        ``KeyboardInterrupt`` raised by Python itself."""
        return signal.Signals(self.received[0]).name if self.received else "SIGINT"
