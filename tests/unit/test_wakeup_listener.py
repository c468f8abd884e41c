"""The direct reader of wake-up subscriptions (multiswarm.wakeups._Listener, decision 62): a
push sets its channel's event in the callback that receives it; confirmations, error replies
and the connection's end are seen."""

from __future__ import annotations

import asyncio

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.wakeups import _direct, _Listener


def _push(*items: bytes) -> bytes:
    return f"*{len(items)}\r\n".encode() + b"".join(b"$%d\r\n%s\r\n" % (len(i), i) for i in items)


async def test_a_message_sets_only_its_channels_event_even_split_across_reads() -> None:
    a, b = asyncio.Event(), asyncio.Event()
    listener = _Listener({"ch:a": a, "ch:b": b})
    data = _push(b"message", b"ch:b", b"")
    listener.data_received(data[:7])
    assert not b.is_set()
    listener.data_received(data[7:] + _push(b"message", b"ch:other", b""))
    assert b.is_set() and not a.is_set() and not listener.ended.done()


async def test_ready_once_every_channel_is_confirmed_and_each_confirmation_wakes() -> None:
    a, b = asyncio.Event(), asyncio.Event()
    listener = _Listener({"ch:a": a, "ch:b": b})
    listener.data_received(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nch:a\r\n:1\r\n")
    assert a.is_set() and not listener.ready.done()
    listener.data_received(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nch:b\r\n:2\r\n")
    assert b.is_set() and listener.ready.done()


async def test_an_error_reply_or_the_end_of_the_connection_ends_the_listener() -> None:
    listener = _Listener({"ch:a": asyncio.Event()})
    listener.data_received(b"-NOPERM no\r\n")
    assert "NOPERM" in listener.ended.result()
    closed = _Listener({"ch:a": asyncio.Event()})
    assert closed.eof_received() is False
    assert closed.ended.done()
    garbled = _Listener({"ch:a": asyncio.Event()})
    garbled.data_received(b"?garbage\r\n")
    assert "unreadable" in garbled.ended.result()


def test_plain_clients_are_read_directly_and_resp3_ones_are_not() -> None:
    plain = connect(Settings(redis_url="redis://127.0.0.1:1/0", redis_url_explicit=True))
    resp3 = connect(Settings(redis_url="redis://127.0.0.1:1/0?protocol=3", redis_url_explicit=True))
    assert _direct(plain)
    assert not _direct(resp3)
