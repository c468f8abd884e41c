"""Shared circuit breakers on a real Redis, with callers in separate processes (ops_peer.py).

Cool-downs are short (a few hundred ms) and every wait polls for a condition, bounded.
"""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest
from click.testing import CliRunner

from multiswarm.breakers import BreakerConfig, BreakerRegistry, CircuitBreaker, Permit
from multiswarm.cli import cli
from multiswarm.cli_ops import breakers
from multiswarm.config import Settings
from multiswarm.errors import CircuitOpenError, ConfigError, NotFound
from multiswarm.keys import Keys
from multiswarm.scripts import Scripts

from .helpers import eventually
from .ops_helpers import Spawn, ops_peers, spawn_all

__all__ = ["ops_peers"]

FAST = BreakerConfig(open_ms=300, trial_timeout_ms=60_000)


async def state_of(registry: BreakerRegistry, name: str) -> str:
    return (await registry.states([name]))[name].state


async def open_breaker(breaker: CircuitBreaker, failures: int = 5) -> None:
    for i in range(failures):
        await breaker.failure(await breaker.acquire(), f"boom {i}")


async def test_state_is_one_for_every_process(
    scripts: Scripts, keys: Keys, ops_peers: Spawn
) -> None:
    registry = BreakerRegistry(scripts, keys)
    slow = msgspec.json.encode(BreakerConfig(open_ms=60_000)).decode()
    # four failures in another process, a success here: the count starts again
    peer = await ops_peers("breaker-fail", "api", "4", slow)
    assert (await peer.event())["state"] == "closed"
    breaker = await registry.get_or_create("api", BreakerConfig(failure_threshold=99))
    assert (await breaker.state()).config.failure_threshold == 5  # the stored config wins
    assert (await breaker.state()).failures == 4
    await breaker.success(await breaker.acquire())
    assert (await breaker.state()).failures == 0
    # five in a row in the other process open it for this one too
    peer = await ops_peers("breaker-fail", "api", "5", slow)
    assert (await peer.event()) == {"event": "done", "state": "open", "opens": 1, "refused": 0}
    assert await state_of(registry, "api") == "open"
    with pytest.raises(CircuitOpenError) as refused:
        await breaker.acquire()
    assert refused.value.state == "open" and 0 < refused.value.retry_after_ms <= 60_000
    # a reset here closes it there
    assert await registry.reset("api")
    peer = await ops_peers("breaker-fail", "api", "0", slow)
    assert (await peer.event())["state"] == "closed"


async def test_half_open_admits_exactly_the_trial_calls(
    scripts: Scripts, keys: Keys, ops_peers: Spawn
) -> None:
    registry = BreakerRegistry(scripts, keys)
    breaker = await registry.get_or_create("model", FAST)
    peers = await spawn_all(ops_peers, [("breaker-trial", "model", "4")] * 6)
    await open_breaker(breaker)
    assert await state_of(registry, "model") == "open"
    await eventually(lambda: _is(registry, "model", "half_open"), what="cool-down over")

    await asyncio.gather(*(p.send("go") for p in peers))
    events = [await p.event() for p in peers]
    kinds = [k for e in events for k in e["kinds"]]
    refusals = [r for e in events for r in e["refused"]]
    assert kinds == ["half_open"] * 3, events
    assert refusals == ["half_open"] * 21, events
    seen = (await registry.states())["model"]
    assert (seen.state, seen.trials, seen.successes) == ("half_open", 3, 0)
    with pytest.raises(CircuitOpenError) as refused:
        await breaker.acquire()
    assert refused.value.state == "half_open"

    await asyncio.gather(*(p.send("success") for p in peers))
    after = [(await p.event())["state"] for p in peers]
    assert "closed" in after, after
    assert await state_of(registry, "model") == "closed"
    assert (await breaker.acquire()).kind == "closed"


async def _is(registry: BreakerRegistry, name: str, state: str) -> bool:
    return await state_of(registry, name) == state


async def test_failure_in_half_open_reopens_and_release_returns_a_permit(
    scripts: Scripts,
    keys: Keys,
) -> None:
    registry = BreakerRegistry(scripts, keys)
    breaker = await registry.get_or_create("db", FAST)
    await open_breaker(breaker)
    first = await eventually(lambda: _try_acquire(breaker), what="a trial permit")
    assert first is not None and first.kind == "half_open"
    await breaker.record(first, "release")  # cancelled: proves nothing, permit back
    permits = [await breaker.acquire() for _ in range(3)]
    with pytest.raises(CircuitOpenError):
        await breaker.acquire()
    await breaker.success(permits[0])
    assert await breaker.failure(permits[1], "still down") == "open"
    assert await breaker.success(permits[2]) == "open"  # a permit of the old state: ignored
    state = await breaker.state()
    assert (state.state, state.opens, state.last_error) == ("open", 2, "still down")


async def _try_acquire(breaker: CircuitBreaker) -> Permit | None:
    try:
        return await breaker.acquire()
    except CircuitOpenError:
        return None


async def test_unreported_trial_calls_count_as_a_failure(scripts: Scripts, keys: Keys) -> None:
    registry = BreakerRegistry(scripts, keys)
    breaker = await registry.get_or_create("lost", BreakerConfig(open_ms=200, trial_timeout_ms=200))
    await open_breaker(breaker)
    lost = await eventually(lambda: _try_acquire(breaker), what="a trial permit")
    await eventually(lambda: _is(registry, "lost", "open"), what="trial timeout")
    again = await eventually(lambda: _try_acquire(breaker), what="a new trial round")
    assert again is not None and lost is not None
    assert again.kind == "half_open" and again.gen != lost.gen
    assert (await breaker.state()).opens == 2


async def test_protect_and_decorator(scripts: Scripts, keys: Keys) -> None:
    registry = BreakerRegistry(scripts, keys)
    breaker = await registry.get_or_create(
        "tool",
        BreakerConfig(failure_threshold=2, success_threshold=1, half_open_calls=1, open_ms=200),
        failure_types=(ValueError,),
    )
    calls = []

    @breaker
    async def flaky(fail: bool) -> str:
        calls.append(fail)
        if fail:
            raise ValueError("nope")
        return "ok"

    assert await flaky(False) == "ok"
    with pytest.raises(KeyError):  # not a failure type: the permit is released, not counted
        async with breaker.protect():
            raise KeyError("x")
    for _ in range(2):
        with pytest.raises(ValueError):
            await flaky(True)
    with pytest.raises(CircuitOpenError):
        await flaky(False)
    assert calls == [False, True, True]
    assert (await breaker.state()).last_error == "ValueError: nope"
    # a cancelled trial gives its permit back, so the next caller gets the trial
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(3600)

    await eventually(lambda: _is(registry, "tool", "half_open"), what="cool-down over")
    task = asyncio.create_task(breaker.call(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await breaker.call(asyncio.sleep, 0, "ok") == "ok"
    assert (await breaker.state()).state == "closed"


async def test_registry(scripts: Scripts, keys: Keys) -> None:
    registry = BreakerRegistry(scripts, keys, defaults=BreakerConfig(failure_threshold=1))
    assert await registry.get("a") is None
    assert await registry.states() == {}
    a = await registry.get_or_create("a")
    b = await registry.get_or_create("b")
    got = await registry.get("a")
    assert got is not None and got.name == "a"
    await a.failure(await a.acquire(), "é" * 150)  # 300 bytes: cut to 200, on a character
    await b.failure(await b.acquire())
    assert (await a.state()).last_error == "é" * 100
    assert {n: s.state for n, s in (await registry.states()).items()} == {"a": "open", "b": "open"}
    assert not await registry.reset("missing")
    assert await registry.reset_all() == ["a", "b"]
    assert {s.state for s in (await registry.states()).values()} == {"closed"}
    with pytest.raises(NotFound):
        await CircuitBreaker(registry, "missing").acquire()
    with pytest.raises(ConfigError):
        BreakerConfig(success_threshold=4, half_open_calls=3)


def _invoke(settings: Settings, *args: str) -> tuple[int, str]:
    cli.add_command(breakers)
    result = CliRunner().invoke(
        cli,
        ["--redis-url", settings.redis_url, "--namespace", settings.namespace, *args],
        catch_exceptions=False,
    )
    return result.exit_code, result.output


async def test_cli(settings: Settings, scripts: Scripts, keys: Keys) -> None:
    registry = BreakerRegistry(scripts, keys)
    llm = await registry.get_or_create("llm", BreakerConfig(failure_threshold=1))
    await registry.get_or_create("search")
    await llm.failure(await llm.acquire(), "timeout")
    code, out = await asyncio.to_thread(_invoke, settings, "breakers", "list", "--json")
    assert code == 0, out
    listed = {b["name"]: b for b in json.loads(out)}
    assert listed["llm"]["state"] == "open" and listed["llm"]["last_error"] == "timeout"
    assert listed["search"]["state"] == "closed"
    code, out = await asyncio.to_thread(_invoke, settings, "breakers", "list")
    assert code == 0 and "llm" in out and "open" in out
    code, out = await asyncio.to_thread(_invoke, settings, "breakers", "reset", "llm", "--json")
    assert code == 0 and json.loads(out) == {"reset": ["llm"]}
    assert await state_of(registry, "llm") == "closed"
    code, out = await asyncio.to_thread(_invoke, settings, "breakers", "reset", "nope")
    assert code != 0 and "no breaker named" in out
    code, out = await asyncio.to_thread(_invoke, settings, "breakers", "reset-all", "--json")
    assert code == 0 and json.loads(out) == {"reset": ["llm", "search"]}
