"""Subscriptions the way the server needs them: ``SUBSCRIBE`` on one server (or Sentinel),
sharded ``SSUBSCRIBE`` (Redis 7) on a Redis Cluster.

On a cluster a classic ``PUBLISH`` is broadcast over the cluster bus to every node and replies
with the subscribers of the node it ran on only, so a publisher counts 0 receivers when they sit
on another node. A sharded channel lives on the master serving its slot: ``SPUBLISH`` reaches
every subscriber and counts them. Every channel is sharded there except
:attr:`~multiswarm.keys.Keys.classic_channels` (the task events published by the task scripts).

Sharded subscriptions are grouped by the node serving each channel, one connection per node, each
read by its own task into one queue, so waiting on a quiet node never delays another node's
message (redis-py's ``get_sharded_message`` polls its nodes one after the other).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.exceptions

from multiswarm.connection import CONNECTION_ERRORS, OUTAGE_CAUGHT, Client, is_cluster
from multiswarm.keys import Keys

#: Seconds each per-node reader waits for a frame before looking again (cancellation points).
_READ_S = 1.0

#: Frames a cluster feed's readers hold for a consumer that is behind. Past them the readers
#: stop reading, the server's pub/sub output buffer fills, and past its limit
#: (``client-output-buffer-limit pubsub``) the server disconnects: the subscription opens a new
#: feed and replays the gap from the channels' history. Without the bound a slow handler let the
#: queue grow without end, as the readers drained every socket (decision 117).
FEED_QUEUE = 1024

#: What a cluster says while a slot has no reachable master (failover under way): an outage.
_CLUSTER_OUTAGE = (redis.exceptions.RedisClusterException, redis.exceptions.ClusterError)

#: Frame types of sharded pub/sub, as their classic equivalents.
_CLASSIC_TYPE = {"smessage": "message", "ssubscribe": "subscribe", "sunsubscribe": "unsubscribe"}

Frame = dict[str, Any]


def sharded(client: Client, keys: Keys, channel: str) -> bool:
    """True when ``channel`` is published and subscribed as a sharded channel on ``client``."""
    return is_cluster(client) and not keys.is_classic(channel)


def _outage(e: BaseException) -> redis.exceptions.ConnectionError:
    return redis.exceptions.ConnectionError(f"cluster unavailable: {e}")


def _sharded_reader(pubsub: Any) -> Callable[..., Awaitable[Frame | None]]:
    async def read(timeout: float) -> Frame | None:
        # redis-py drops a node's connection when its channels moved away; with none left it
        # would return None at once, forever: resubscribe instead
        if not pubsub.node_pubsub_mapping:
            raise redis.exceptions.ConnectionError("no node serves the sharded channels now")
        frame: Frame | None = await pubsub.get_sharded_message(timeout=timeout)
        return frame

    return read


class Feed:
    """The frames of ``channels``, subscribed on ``client``; ``frame["type"]`` is ``message`` or
    ``subscribe`` (one per channel, again after redis-py resubscribes) whatever the kind.

    Errors that mean the server or a cluster slot is unreachable surface from :meth:`get` as
    ``redis.exceptions.ConnectionError``; the caller closes the feed and opens a new one.
    """

    def __init__(self, client: Client, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._pubsubs: list[Any] = []
        self._readers: list[asyncio.Task[None]] = []
        self._queue: asyncio.Queue[Frame | BaseException] = asyncio.Queue(FEED_QUEUE)

    async def open(self, channels: Sequence[str], refresh: bool = False) -> None:
        """Subscribe to ``channels``. ``refresh``: re-read a cluster's slot map first (after a
        lost connection, the node that served a channel may have failed over)."""
        if not is_cluster(self.client):
            pubsub: Any = self.client.pubsub()
            self._pubsubs.append(pubsub)
            await pubsub.subscribe(*channels)
            return
        cluster: Any = self.client
        try:
            # the slot map first: get_node_from_key reads it, and a client whose first command
            # is a pub/sub one is otherwise left half initialised (redis-py 8.1)
            await cluster.initialize()
            if refresh:
                await cluster.nodes_manager.initialize()
            by_node: defaultdict[str, list[str]] = defaultdict(list)
            classic = []
            for channel in channels:
                if sharded(self.client, self.keys, channel):
                    by_node[cluster.get_node_from_key(channel).name].append(channel)
                else:
                    classic.append(channel)
            if classic:
                pubsub = cluster.pubsub()
                self._pubsubs.append(pubsub)
                await pubsub.subscribe(*classic)
                self._start(pubsub.get_message)
            for group in by_node.values():
                pubsub = cluster.pubsub()
                self._pubsubs.append(pubsub)
                await pubsub.ssubscribe(*group)
                self._start(_sharded_reader(pubsub))
        except _CLUSTER_OUTAGE as e:
            raise _outage(e) from e

    def _start(self, read: Callable[..., Awaitable[Frame | None]]) -> None:
        self._readers.append(asyncio.create_task(self._pump(read)))

    async def _pump(self, read: Callable[..., Awaitable[Frame | None]]) -> None:
        try:
            while True:
                frame = await read(timeout=_READ_S)
                if frame is not None:
                    await self._queue.put(frame)
        except (*OUTAGE_CAUGHT, *_CLUSTER_OUTAGE) as e:  # (a BUSY ping: read by `get` too)
            await self._queue.put(e)

    async def get(self, timeout_s: float) -> Frame | None:
        """The next frame, or None after ``timeout_s`` without one."""
        if not self._readers:
            frame: Frame | None = await self._pubsubs[0].get_message(timeout=timeout_s)
            return frame
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout_s)
        except asyncio.TimeoutError:
            return None
        if isinstance(item, _CLUSTER_OUTAGE):
            raise _outage(item) from item
        if isinstance(item, BaseException):
            raise item
        kind = item["type"]
        kind = kind.decode() if isinstance(kind, bytes) else kind
        return {**item, "type": _CLASSIC_TYPE.get(kind, kind)}

    async def aclose(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        for pubsub in self._pubsubs:
            with contextlib.suppress(*CONNECTION_ERRORS, *_CLUSTER_OUTAGE):
                await pubsub.aclose()
