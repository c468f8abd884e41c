"""A cluster feed's readers hold at most FEED_QUEUE frames for a consumer that is behind: before,
they drained every socket into an unbounded queue while a slow handler ran (found in review)."""

from __future__ import annotations

import asyncio
from typing import Any

from multiswarm.feed import FEED_QUEUE, Feed
from multiswarm.keys import Keys


async def test_readers_stop_at_the_bound_while_the_consumer_is_behind() -> None:
    reads = 0

    async def flood(timeout: float) -> dict[str, Any]:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0)
        return {"type": "message", "channel": b"c", "data": b"x"}

    feed = Feed(client=None, keys=Keys("q"))  # type: ignore[arg-type]  # (no Redis: pure logic)
    feed._start(flood)
    try:
        for _ in range(FEED_QUEUE * 3):  # many turns of the loop without a get()
            await asyncio.sleep(0)
        assert feed._queue.qsize() == FEED_QUEUE
        assert reads <= FEED_QUEUE + 1
        frame = await feed.get(1.0)  # the consumer catches up: reading goes on
        assert frame is not None and frame["data"] == b"x"
    finally:
        for task in feed._readers:
            task.cancel()
        await asyncio.gather(*feed._readers, return_exceptions=True)
