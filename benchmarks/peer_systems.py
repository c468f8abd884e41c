"""How the driver of benchmarks/bench_peers.py uses each task system, as its users would.

One class per system: set up what is not a worker, submit N tasks (each library's bulk path where
it has one), start the 2 processes that run handlers, one round trip through the library's own
wait API, and how many submitted tasks the library records as completed. Peer workers run in
their own sessions, so stopping one stops its forks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from peer_tasks import MS_HANDLER, QUEUE

from multiswarm.api import Multiswarm
from multiswarm.config import Settings
from multiswarm.launcher import ProcessGroup
from multiswarm.tasks import task_spec

HERE = Path(__file__).resolve().parent
#: Longest wait of one round trip, seconds.
RTT_TIMEOUT_S = 10
#: Tasks each multiswarm agent process runs at once (``run worker --concurrency``).
MS_CONCURRENCY = 8


class Children:
    """Peer worker processes, each in its own session so its forks stop with it."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, args: list[str]) -> None:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, *args],
                    cwd=HERE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )

    def check(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"worker {p.args!r} exited with {p.returncode}")

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM each process group (a warm shutdown), SIGKILL what is left."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in self.procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, sig)
            deadline = time.monotonic() + timeout_s
            for p in self.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=max(0.1, deadline - time.monotonic()))
            if all(p.poll() is not None for p in self.procs):
                break
        self.procs.clear()


class System:
    """One task system as its users drive it. ``rtt_api`` says how a round trip waits."""

    rtt_api = ""

    def __init__(self, url: str, tag: str, log_dir: Path) -> None:
        self.url, self.tag, self.log_dir = url, tag, log_dir
        self.children = Children(log_dir)

    async def setup(self) -> None:
        """Everything but the processes that run handlers."""

    async def submit(self, counter: str, n: int) -> list[Any]:
        raise NotImplementedError

    async def start_workers(self) -> None:
        raise NotImplementedError

    async def round_trip(self, counter: str) -> None:
        raise NotImplementedError

    async def recorded(self, handles: list[Any]) -> int:
        """How many of the submitted tasks the library records as completed."""
        raise NotImplementedError

    def check(self) -> None:
        self.children.check()

    async def close(self) -> None:
        self.children.stop()


class MultiswarmSystem(System):
    rtt_api = "Multiswarm.distribute_task + Multiswarm.wait_for (default poll_s)"

    async def setup(self) -> None:
        self.settings = Settings(
            redis_url=self.url, redis_url_explicit=True, namespace=f"peers{self.tag}"
        )
        self.group = ProcessGroup(self.settings, self.log_dir)
        self.group.spawn("registry", ["registry"])
        self.group.spawn("coordinator", ["coordinator", "--id", "c1"])
        self.ms = await Multiswarm.connect(settings=self.settings)
        deadline = time.monotonic() + 60
        while not await self.ms.client.get(self.ms.keys.leader):
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError("no multiswarm leader within 60 s")
            await asyncio.sleep(0.05)
        if callable(getattr(self.ms, "result", None)):
            self.rtt_api = "Multiswarm.distribute_task + await Multiswarm.result"

    async def submit(self, counter: str, n: int) -> list[Any]:
        batch = [(task_spec(MS_HANDLER, capabilities=[QUEUE]), counter) for _ in range(n)]
        await self.ms.tasks.submit(batch)
        return [spec.id for spec, _ in batch]

    async def start_workers(self) -> None:
        self.group.spawn(
            "worker",
            # 2 agent processes x 8 tasks at once, as Dramatiq's 2 processes x 8 threads
            [
                "worker",
                "--id",
                "w1",
                "--swarm",
                f"s:{QUEUE}:2",
                "--allow-handlers",
                "peer_tasks:",
                "--concurrency",
                str(MS_CONCURRENCY),
            ],
        )

    async def round_trip(self, counter: str) -> None:
        tid = await self.ms.distribute_task(MS_HANDLER, counter, capabilities=[QUEUE])
        waiter = getattr(self.ms, "result", None)
        if callable(waiter):  # the event-driven wait of issue 11, once it exists
            await asyncio.wait_for(waiter(tid), RTT_TIMEOUT_S)
        else:
            await self.ms.wait_for(tid, timeout_s=RTT_TIMEOUT_S)

    async def recorded(self, handles: list[Any]) -> int:
        tasks = await self.ms.tasks.get_many(handles)
        return sum(1 for t in tasks if t is not None and t.status == "completed")

    def check(self) -> None:
        for child in self.group.children:
            if not child.alive():
                raise RuntimeError(f"multiswarm {child.name} exited ({child.proc.returncode})")

    async def close(self) -> None:
        if hasattr(self, "ms"):
            await self.ms.close()
        if hasattr(self, "group"):
            self.group.stop_all()


class DramatiqSystem(System):
    rtt_api = "actor.send + Message.get_result(block=True)"

    async def setup(self) -> None:
        import peer_tasks

        self.actor = peer_tasks.dramatiq_setup()

    async def submit(self, counter: str, n: int) -> list[Any]:
        return [self.actor.send(counter) for _ in range(n)]

    async def start_workers(self) -> None:
        self.children.spawn(
            "dramatiq",
            ["-m", "dramatiq", "peer_tasks:dramatiq_setup", "--processes", "2", "--threads", "8"],
        )

    async def round_trip(self, counter: str) -> None:
        self.actor.send(counter).get_result(block=True, timeout=RTT_TIMEOUT_S * 1000)

    async def recorded(self, handles: list[Any]) -> int:
        from dramatiq.results import ResultMissing

        done = 0
        for message in handles:
            with contextlib.suppress(ResultMissing):
                message.get_result()
                done += 1
        return done


class SaqSystem(System):
    # Queue.apply polls every 0.5 s in SAQ 0.26 (and sleeps once more after the result came);
    # Job.refresh(until_complete=...) waits on SAQ's pub/sub job updates, as a user after latency
    # would
    rtt_api = "Queue.enqueue + Job.refresh(until_complete=...) (pub/sub job updates)"

    async def setup(self) -> None:
        import peer_tasks

        self.queue = peer_tasks.saq_queue()
        await self.queue.connect()

    async def submit(self, counter: str, n: int) -> list[Any]:
        # SAQ bounds concurrent operations per queue itself (max_concurrent_ops)
        return list(
            await asyncio.gather(*(self.queue.enqueue("count", counter=counter) for _ in range(n)))
        )

    async def start_workers(self) -> None:
        self.children.spawn("saq", ["-m", "saq", "peer_tasks.saq_settings", "--workers", "2"])

    async def round_trip(self, counter: str) -> None:
        from saq.job import Status

        job = await self.queue.enqueue("count", counter=counter)
        await job.refresh(until_complete=RTT_TIMEOUT_S)
        if job.status != Status.COMPLETE:
            raise RuntimeError(f"SAQ round trip ended {job.status}")

    async def recorded(self, handles: list[Any]) -> int:
        from saq.job import Status

        jobs = await asyncio.gather(*(self.queue.job(j.key) for j in handles))
        return sum(1 for j in jobs if j is not None and j.status == Status.COMPLETE)

    async def close(self) -> None:
        await super().close()
        if hasattr(self, "queue"):
            await self.queue.disconnect()


class CelerySystem(System):
    rtt_api = "task.delay + AsyncResult.get (Redis backend: pub/sub)"

    async def setup(self) -> None:
        import peer_tasks

        self.app, self.task = peer_tasks.celery_setup()

    async def submit(self, counter: str, n: int) -> list[Any]:
        return [self.task.apply_async((counter,)) for _ in range(n)]

    async def start_workers(self) -> None:
        for i in (1, 2):
            self.children.spawn(
                f"celery{i}",
                [
                    "-m",
                    "celery",
                    "-A",
                    "peer_tasks:celery_app",
                    "worker",
                    "--pool",
                    "solo",
                    "-n",
                    f"w{i}-{self.tag}@bench",
                    "--without-mingle",
                    "--without-gossip",
                    "--without-heartbeat",
                    "--loglevel",
                    "WARNING",
                ],
            )

    async def round_trip(self, counter: str) -> None:
        self.task.delay(counter).get(timeout=RTT_TIMEOUT_S)

    async def recorded(self, handles: list[Any]) -> int:
        return sum(1 for r in handles if r.state == "SUCCESS")


class RqSystem(System):
    rtt_api = "Queue.enqueue + Job.latest_result(timeout=...) (XREAD BLOCK on the result stream)"

    async def setup(self) -> None:
        import redis
        from rq import Queue

        self.conn = redis.Redis.from_url(self.url)
        self.queue = Queue(QUEUE, connection=self.conn)

    async def submit(self, counter: str, n: int) -> list[Any]:
        from peer_tasks import count
        from rq import Queue

        jobs: list[Any] = self.queue.enqueue_many(
            [Queue.prepare_data(count, (counter,)) for _ in range(n)]
        )
        return jobs

    async def start_workers(self) -> None:
        for i in (1, 2):
            self.children.spawn(
                f"rq{i}",
                [
                    "-m",
                    "rq.cli",
                    "worker",
                    "--worker-class",
                    "rq.SimpleWorker",
                    "--url",
                    self.url,
                    "-n",
                    f"w{i}-{self.tag}",
                    QUEUE,
                ],
            )

    async def round_trip(self, counter: str) -> None:
        from peer_tasks import count

        result = self.queue.enqueue(count, counter).latest_result(timeout=RTT_TIMEOUT_S)
        if result is None or result.type != result.Type.SUCCESSFUL:
            raise RuntimeError(f"RQ round trip ended {result and result.type}")

    async def recorded(self, handles: list[Any]) -> int:
        from rq.job import Job, JobStatus

        jobs = Job.fetch_many([j.id for j in handles], connection=self.conn)
        return sum(1 for j in jobs if j is not None and j.get_status() == JobStatus.FINISHED)

    async def close(self) -> None:
        await super().close()
        if hasattr(self, "conn"):
            self.conn.close()


CLASSES: dict[str, type[System]] = {
    "multiswarm": MultiswarmSystem,
    "dramatiq": DramatiqSystem,
    "saq": SaqSystem,
    "celery": CelerySystem,
    "rq": RqSystem,
}
