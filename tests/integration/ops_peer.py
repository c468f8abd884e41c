"""A separate process for the breaker, resource and vote tests (ops_helpers.py starts it).

Prints one JSON object per line on stdout (first ``{"event": "ready"}``) and reads commands, one
per line, from stdin, so the test decides when the peers act and can release them together.

\b
  breaker-fail NAME COUNT CONFIG_JSON   create NAME, record COUNT failures, print its state
  breaker-trial NAME TRIES              on "go": up to TRIES acquires, keep the permits got,
                                        then on "success"/"failure" record them all
  allocate SWARM TYPE ITERATIONS SEED   on "go": allocate/release at random, print own tally
  vote VOTER MODE HONEST OTHER          on a proposal id line: vote as MODE (honest, liar,
                                        equivocate, silent), print the receipts
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from typing import Any

import msgspec

from multiswarm.breakers import BreakerConfig, BreakerRegistry, Permit
from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.consensus import Consensus
from multiswarm.errors import CircuitOpenError, ResourceExhausted
from multiswarm.keys import Keys
from multiswarm.resources import ResourcePools
from multiswarm.scripts import Scripts


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


async def line() -> str:
    text: str = await asyncio.to_thread(sys.stdin.readline)
    return text.strip()


async def breaker_fail(scripts: Scripts, keys: Keys, name: str, count: str, cfg: str) -> None:
    registry = BreakerRegistry(scripts, keys)
    breaker = await registry.get_or_create(name, msgspec.json.decode(cfg, type=BreakerConfig))
    emit({"event": "ready"})
    refused = 0
    for i in range(int(count)):
        try:
            await breaker.failure(await breaker.acquire(), f"failure {i}")
        except CircuitOpenError:
            refused += 1
    state = await breaker.state()
    emit({"event": "done", "state": state.state, "opens": state.opens, "refused": refused})


async def breaker_trial(scripts: Scripts, keys: Keys, name: str, tries: str) -> None:
    breaker = await BreakerRegistry(scripts, keys).get_or_create(name)
    emit({"event": "ready"})
    assert await line() == "go"
    permits: list[Permit] = []
    refused: list[str] = []
    for _ in range(int(tries)):
        try:
            permits.append(await breaker.acquire())
        except CircuitOpenError as e:
            refused.append(e.state)
    emit({"event": "acquired", "kinds": [p.kind for p in permits], "refused": refused})
    outcome = await line()
    for p in permits:
        await breaker.record(p, "success" if outcome == "success" else "failure")
    emit({"event": "recorded", "state": (await breaker.state()).state})


async def allocate(
    scripts: Scripts, keys: Keys, swarm: str, rtype: str, iterations: str, seed: str
) -> None:
    pools = ResourcePools(scripts, keys)
    rng = random.Random(int(seed))
    emit({"event": "ready"})
    assert await line() == "go"
    held = granted = refused = 0
    for _ in range(int(iterations)):
        if held and rng.random() < 0.3:
            amount = rng.randint(1, held)
            held -= await pools.release(swarm, rtype, amount)
            continue
        amount = rng.randint(1, 7)
        try:
            alloc = await pools.allocate(swarm, rtype, amount)
        except ResourceExhausted:
            refused += 1
            continue
        assert alloc.allocated <= alloc.capacity
        held += amount
        granted += 1
    emit({"event": "done", "held": held, "granted": granted, "refused": refused})


async def vote(
    scripts: Scripts, keys: Keys, voter: str, mode: str, honest: str, other: str
) -> None:
    consensus = Consensus(scripts, keys, sender=voter)
    emit({"event": "ready"})
    proposal = await line()
    choices = {"honest": [honest], "liar": [other], "equivocate": [other, honest], "silent": []}[
        mode
    ]
    receipts = [await consensus.vote(proposal, voter, c) for c in choices]
    emit(
        {
            "event": "voted",
            "voter": voter,
            "outcomes": [r.outcome for r in receipts],
            "statuses": [r.status for r in receipts],
        }
    )


async def main(argv: list[str]) -> None:
    url, namespace, command, *args = argv
    settings = Settings(redis_url=url, redis_url_explicit=True, namespace=namespace)
    client = connect(settings)
    scripts, keys = Scripts(client, reconnect_timeout_s=30.0), Keys(namespace)
    try:
        commands: dict[str, Any] = {
            "breaker-fail": breaker_fail,
            "breaker-trial": breaker_trial,
            "allocate": allocate,
            "vote": vote,
        }
        await commands[command](scripts, keys, *args)
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
