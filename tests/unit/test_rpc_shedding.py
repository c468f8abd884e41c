"""A responder sheds requests past its queue without waiting on Redis in its dispatch loop: that
loop also reads the replies to the process's own requests, and a slow Redis held it for each
shed request in turn (found in review of decision 109)."""

from __future__ import annotations

import asyncio
from typing import Any

from multiswarm.envelopes import Delivered
from multiswarm.keys import Keys
from multiswarm.messages import Envelope
from multiswarm.rpc import SHED_REPLIES, Dispatcher


async def test_shed_requests_do_not_hold_the_dispatch_loop() -> None:
    sends: list[str] = []
    never = asyncio.Event()

    async def send_stuck(channel: str, env: Envelope) -> Any:
        sends.append(channel)
        await never.wait()  # Redis stalled: the send does not return

    counts: dict[str, int] = {"requests_shed": 0}
    dispatcher = Dispatcher(
        Keys("shed"),
        None,  # type: ignore[arg-type]  # (no subscription: _dispatch only)
        envelope=lambda type, payload, target, agent, correlation: Envelope(type=type),  # type: ignore[arg-type]
        send=send_stuck,
        reply_channel="shed:reply:me",
        request_timeout_s=1.0,
        reconnect_timeout_s=1.0,
        max_concurrent_requests=0,
        max_queued_requests=0,
        counts=counts,
    )
    dispatcher.on_request(lambda request: {})
    try:
        for i in range(SHED_REPLIES + 10):
            request = Delivered(type="request", sender="asker", id=f"r{i}")
            await asyncio.wait_for(dispatcher._dispatch("shed:s", request), 5)
        await asyncio.sleep(0)
        assert counts["requests_shed"] == SHED_REPLIES + 10
        assert len(sends) == SHED_REPLIES  # replies in flight are bounded; the rest time out
    finally:
        await dispatcher.stop()
