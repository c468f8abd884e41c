"""Handler dispatch and request/response for a messenger.

A :class:`Dispatcher` runs the dispatch loop (a :class:`~multiswarm.subscription.Subscription`
feeding the ``on_message`` handlers), answers ``request`` messages with the ``on_request``
handler, and matches ``response`` / ``response_error`` messages on the reply channel to the
pending :meth:`Dispatcher.request` by correlation id. It sends through the envelope factory and
the recorded send of the :class:`~multiswarm.messenger.SwarmMessenger` that owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from multiswarm.envelopes import Delivered, Sent, check_type, swarm_channel
from multiswarm.errors import (
    InvalidArgumentError,
    MultiswarmError,
    RedisUnavailable,
    RequestFailed,
    RequestTimeout,
)
from multiswarm.keys import Keys, check_id
from multiswarm.messages import Envelope
from multiswarm.subscription import Subscription

log = logging.getLogger(__name__)


class MessageHandler(Protocol):
    """``handler(envelope)``; may be ``async``. What it returns is ignored."""

    def __call__(self, env: Delivered, /) -> Awaitable[None] | None: ...


class RequestHandler(Protocol):
    """``handler(request) -> response payload`` (a dict; None means ``{}``); may be async."""

    def __call__(
        self, env: Delivered, /
    ) -> Awaitable[dict[str, Any] | None] | dict[str, Any] | None: ...


class EnvelopeFactory(Protocol):
    """Builds an envelope of the messenger's sender (``sender`` overrides it)."""

    def __call__(
        self,
        type: str,
        payload: dict[str, Any] | None,
        target: str,
        agent: str,
        correlation_id: str = "",
        sender: str | None = None,
    ) -> Envelope: ...


#: Most "overloaded" replies a responder has in flight at once (decision 109).
SHED_REPLIES = 64

#: Records and publishes an envelope on a channel, retrying connection errors.
SendRecorded = Callable[[str, Envelope], Awaitable[Sent]]


class Dispatcher:
    """Dispatch loop, handlers and request/response of one messenger.

    Parameters
    ----------
    keys:
        Names of the namespace.
    subscription:
        Receives for the dispatch loop and the reply listener.
    envelope, send:
        Build and send (recorded, retried) requests and responses: the owning messenger's.
    reply_channel:
        Where responses to this messenger's requests arrive.
    request_timeout_s, reconnect_timeout_s, max_concurrent_requests, max_queued_requests,
    counts:
        As :class:`~multiswarm.messenger.SwarmMessenger` (``counts`` updated in place).
    """

    def __init__(
        self,
        keys: Keys,
        subscription: Subscription,
        *,
        envelope: EnvelopeFactory,
        send: SendRecorded,
        reply_channel: str,
        request_timeout_s: float,
        reconnect_timeout_s: float,
        max_concurrent_requests: int,
        max_queued_requests: int,
        counts: dict[str, int],
    ) -> None:
        self.keys = keys
        self._envelope = envelope
        self._send = send
        self.subscription = subscription
        self.reply_channel = reply_channel
        self.request_timeout_s = request_timeout_s
        self.reconnect_timeout_s = reconnect_timeout_s
        self.counts = counts
        self._handlers: dict[str, list[MessageHandler]] = {}
        self._request_handler: RequestHandler | None = None
        self._request_slots = asyncio.Semaphore(max_concurrent_requests)
        self._max_jobs = max_concurrent_requests + max_queued_requests
        self._pending: dict[str, asyncio.Future[Delivered]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._loop_channels: list[str] = []
        self._loop_ready = asyncio.Event()
        self._reply_task: asyncio.Task[None] | None = None
        self._reply_ready = asyncio.Event()
        self._reply_lock = asyncio.Lock()
        self._jobs: set[asyncio.Task[None]] = set()
        self._shedding: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        """True while the dispatch loop runs."""
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def pending(self) -> int:
        """Requests waiting for their response."""
        return len(self._pending)

    # -- handlers ----------------------------------------------------------------------------------
    def on_message(self, type: str, handler: MessageHandler) -> None:
        """See :meth:`multiswarm.messenger.SwarmMessenger.on_message`."""
        if type != "*":
            check_type(type)
        self._handlers.setdefault(type, []).append(handler)

    def on_request(self, handler: RequestHandler) -> None:
        """See :meth:`multiswarm.messenger.SwarmMessenger.on_request`."""
        self._request_handler = handler

    async def _dispatch(self, channel: str, env: Delivered) -> None:
        if env.type in ("response", "response_error") and channel == self.reply_channel:
            fut = self._pending.get(env.correlation_id)
            if fut is not None and not fut.done():
                self.counts["responses"] += 1
                fut.set_result(env)
            return
        if env.type == "request" and self._request_handler is not None:
            if len(self._jobs) >= self._max_jobs:
                # load shedding: each waiting request holds a task, so a burst the handlers
                # cannot keep up with would grow without bound; the requester hears it at once,
                # from a bounded set of tasks (awaited here, a slow Redis would hold the loop,
                # and the replies to this process's own requests with it); past that bound the
                # requester's timeout tells it
                self.counts["requests_shed"] += 1
                if len(self._shedding) < SHED_REPLIES:
                    error = (
                        f"overloaded: {len(self._jobs)} requests running or waiting "
                        "(max_concurrent_requests + max_queued_requests); try again later"
                    )
                    job = asyncio.create_task(self._shed(env, error))
                    self._shedding.add(job)
                    job.add_done_callback(self._shedding.discard)
            else:
                job = asyncio.create_task(self._answer(self._request_handler, env))
                self._jobs.add(job)
                job.add_done_callback(self._jobs.discard)
        for handler in (*self._handlers.get(env.type, ()), *self._handlers.get("*", ())):
            try:
                result = handler(env)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.counts["handler_errors"] += 1
                log.exception("handler for %r failed on message %s", env.type, env.id)

    async def _shed(self, request: Delivered, error: str) -> None:
        with contextlib.suppress(MultiswarmError):
            await self.reply(request, error=error)

    async def _answer(self, handler: RequestHandler, request: Delivered) -> None:
        async with self._request_slots:
            try:
                result = handler(request)
                if inspect.isawaitable(result):
                    result = await result
                if not isinstance(result, dict):  # (the requester's decoder would refuse it:
                    # its caller timed out instead of hearing why; found in review)
                    raise InvalidArgumentError(
                        f"a request handler returns a dict, not {type(result).__name__}"
                    )
                await self.reply(request, result)
            except Exception as e:
                self.counts["handler_errors"] += 1
                log.exception("request handler failed on %s", request.id)
                with contextlib.suppress(MultiswarmError):
                    await self.reply(request, error=f"{type(e).__name__}: {e}")

    async def reply(
        self, request: Envelope, payload: dict[str, Any] | None = None, *, error: str | None = None
    ) -> Sent:
        """See :meth:`multiswarm.messenger.SwarmMessenger.reply`."""
        requester = check_id(request.sender, "requester id")
        if error is not None:
            env = self._envelope("response_error", {"error": error}, requester, "", request.id)
        else:
            env = self._envelope("response", payload, requester, "", request.id)
        return await self._send(self.keys.ch_reply(requester), env)

    # -- loops ---------------------------------------------------------------------------------
    async def _run(
        self, channels: list[str], ready: asyncio.Event, since: str | int | None
    ) -> None:
        stream = self.subscription.listen(channels, ready, since=since)
        async with contextlib.aclosing(stream) as messages:
            async for channel, env in messages:
                await self._dispatch(channel, env)

    async def _wait_ready(self, task: asyncio.Task[None], ready: asyncio.Event) -> None:
        waiter = asyncio.ensure_future(ready.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, task},
                timeout=self.reconnect_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waiter.cancel()
        if task in done:
            task.result()
        if not ready.is_set():
            raise RedisUnavailable(f"could not subscribe within {self.reconnect_timeout_s} s")

    async def start(self, channels: Sequence[str], since: str | int | None) -> None:
        """Run the dispatch loop over ``channels`` (validated, de-duplicated) in a background
        task; returns once subscribed (at once when it runs already). Raises RedisUnavailable
        when not subscribed within ``reconnect_timeout_s`` (everything is stopped then)."""
        if self.running:
            return
        self._loop_channels = list(channels)
        self._loop_ready = asyncio.Event()
        self._loop_task = asyncio.create_task(
            self._run(self._loop_channels, self._loop_ready, since)
        )
        try:
            await self._wait_ready(self._loop_task, self._loop_ready)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop the dispatch loop, the reply listener and running request handlers; pending
        requests fail."""
        tasks = [
            t
            for t in (self._loop_task, self._reply_task, *self._jobs, *self._shedding)
            if t is not None
        ]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = self._reply_task = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(MultiswarmError("messenger stopped"))

    # -- request/response ------------------------------------------------------------------------
    async def _ensure_replies(self) -> None:
        loop_task = self._loop_task
        if (
            loop_task is not None
            and not loop_task.done()
            and self.reply_channel in self._loop_channels
        ):
            await self._wait_ready(loop_task, self._loop_ready)
            return
        async with self._reply_lock:
            if self._reply_task is None or self._reply_task.done():
                self._reply_ready = asyncio.Event()
                self._reply_task = asyncio.create_task(
                    self._run([self.reply_channel], self._reply_ready, None)
                )
            await self._wait_ready(self._reply_task, self._reply_ready)

    async def request(
        self,
        target: str,
        payload: dict[str, Any] | None,
        timeout_s: float | None,
        *,
        agent: str,
        sender: str,
    ) -> Delivered:
        """Send a request to swarm ``target`` and wait for its response.

        The responder (any process whose messenger for ``target`` was started with an
        ``on_request`` handler) answers on this messenger's reply channel, matched by
        correlation id. The reply listener starts by itself on first use.

        Parameters
        ----------
        target:
            Swarm id.
        payload:
            Request payload.
        timeout_s:
            Seconds to wait for the response (default ``request_timeout_s``, 30).
        agent:
            Sending agent id, or ``""``.
        sender:
            The requester's reply address (responses go to its reply channel).

        Returns
        -------
        Delivered
            The response envelope; its ``payload`` is what the handler returned.

        Raises
        ------
        RequestTimeout
            No response within ``timeout_s`` (also a ``TimeoutError``).
        RequestFailed
            The responder's handler raised.
        InvalidIdError, MessageTooLargeError, RedisUnavailable
            As :meth:`multiswarm.messenger.SwarmMessenger.send`.
        """
        timeout = self.request_timeout_s if timeout_s is None else timeout_s
        channel = swarm_channel(self.keys, target)
        await self._ensure_replies()
        env = self._envelope("request", payload, target, agent, sender=sender)
        fut: asyncio.Future[Delivered] = asyncio.get_running_loop().create_future()
        self._pending[env.id] = fut
        try:
            await self._send(channel, env)
            self.counts["requests"] += 1
            try:
                response = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                self.counts["timeouts"] += 1
                raise RequestTimeout(
                    f"no response from {target} to request {env.id} within {timeout} s"
                ) from None
        finally:
            self._pending.pop(env.id, None)
        if response.type == "response_error":
            raise RequestFailed(str(response.payload.get("error", "")), response.sender)
        return response
