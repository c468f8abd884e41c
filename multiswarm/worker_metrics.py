"""A worker's own Prometheus histograms, for ``run worker --metrics-port``.

The API's ``/metrics`` reports the deployment from Redis; what only the worker sees is here:
how long handlers ran, how long tasks waited before this worker claimed them, and how many
tasks one claim took. Each worker process has its own registry and its own small HTTP server
(prometheus_client's, in a daemon thread), so scraping never touches the event loop.

Hooks: :class:`~multiswarm.worker.Worker` holds one (``metrics or WorkerMetrics(enabled=False)``:
a disabled one costs nothing, and builds its histograms, importing prometheus_client, only if
they are read: a worker without ``--metrics-port`` never imports it, decision 85), calls
:meth:`WorkerMetrics.claimed` after each claim and :meth:`WorkerMetrics.ran` after each handler
run (``run worker --metrics-port``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, TypeVar

from multiswarm.errors import ConfigError, MultiswarmError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry, Histogram

    from multiswarm.tasks import TaskStore

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Handler run time buckets, in seconds (a no-op to a long LLM call).
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: Queue wait buckets, in seconds.
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
#: Claim batch size buckets, in tasks.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class WorkerMetrics:
    """The histograms of one worker process.

    ``multiswarm_worker_task_run_seconds{swarm,outcome}``
        Wall time of one handler run in its agent process; ``outcome`` ``ok`` | ``error`` |
        ``permanent`` as the agent reported it.
    ``multiswarm_worker_task_queue_wait_seconds{swarm}``
        From submission to the first claim (server clock: ``started_ms - created_ms`` of the
        task record, first attempts only, so backoff waits of retries are not counted; a task
        that waited for dependencies counts that wait too).
    ``multiswarm_worker_claim_batch_size{swarm}``
        Tasks taken by one non-empty claim.
    """

    def __init__(self, enabled: bool = True) -> None:
        #: False: every hook returns at once (a worker started without ``--metrics-port``)
        self.enabled = enabled
        self._pending: set[asyncio.Task[None]] = set()
        self._server: WSGIServer | None = None
        if enabled:  # registered now, so a scrape before the first task lists them all
            _ = self._histograms

    @functools.cached_property
    def registry(self) -> CollectorRegistry:
        """This worker's own Prometheus registry (built on first use)."""
        from prometheus_client import CollectorRegistry

        return CollectorRegistry()

    @property
    def run_s(self) -> Histogram:
        return self._histograms[0]

    @property
    def queue_wait_s(self) -> Histogram:
        return self._histograms[1]

    @property
    def claim_batch(self) -> Histogram:
        return self._histograms[2]

    @functools.cached_property
    def _histograms(self) -> tuple[Histogram, Histogram, Histogram]:
        from prometheus_client import Histogram

        def histogram(
            name: str, doc: str, labels: list[str], buckets: Sequence[float]
        ) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)

        return (
            histogram(
                "multiswarm_worker_task_run_seconds",
                "Handler run time",
                ["swarm", "outcome"],
                RUN_BUCKETS,
            ),
            histogram(
                "multiswarm_worker_task_queue_wait_seconds",
                "Submission to first claim",
                ["swarm"],
                WAIT_BUCKETS,
            ),
            histogram(
                "multiswarm_worker_claim_batch_size",
                "Tasks taken by one claim",
                ["swarm"],
                BATCH_BUCKETS,
            ),
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> str:
        """Serve ``/metrics`` on ``host:port`` (0: a free port); returns its URL.

        Raises
        ------
        ConfigError
            The address cannot be bound.
        """
        from prometheus_client import start_http_server

        try:
            self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise ConfigError(f"cannot serve worker metrics on {host}:{port}: {e}") from e
        return f"http://{host}:{self._server.server_port}/metrics"

    def close(self) -> None:
        """Stop serving (the process exiting stops it too: the server thread is a daemon)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def claimed(self, store: TaskStore, swarm_id: str, task_ids: Sequence[str]) -> None:
        """Count one non-empty claim; the queue waits are read from the records in the
        background (one HMGET per claim, off the claim loop's path)."""
        if not self.enabled or not task_ids:
            return
        self.claim_batch.labels(swarm_id).observe(len(task_ids))
        task = asyncio.get_running_loop().create_task(
            self._observe_waits(store, swarm_id, list(task_ids))
        )
        self._pending.add(task)  # a reference, so the task is not collected mid-flight
        task.add_done_callback(self._pending.discard)

    def ran(self, swarm_id: str, outcome: str, seconds: float) -> None:
        """Count one handler run of ``seconds`` that ended ``outcome``."""
        if self.enabled:
            self.run_s.labels(swarm_id, outcome).observe(seconds)

    async def timed(self, swarm_id: str, run: Awaitable[tuple[str, T]]) -> tuple[str, T]:
        """Await an agent's run (``(outcome, data)``) and count its wall time under its
        outcome; a run that raises is not counted."""
        started = time.monotonic()
        outcome, data = await run
        self.ran(swarm_id, outcome, time.monotonic() - started)
        return outcome, data

    async def _observe_waits(self, store: TaskStore, swarm_id: str, task_ids: list[str]) -> None:
        try:
            records = await store.get_many(task_ids)
        except MultiswarmError as e:  # a metric is not worth failing the worker over
            log.debug("queue wait not observed: %s", e)
            return
        for t in records:
            if t is not None and t.attempts == 1 and t.started_ms >= t.created_ms > 0:
                self.queue_wait_s.labels(swarm_id).observe((t.started_ms - t.created_ms) / 1000)
