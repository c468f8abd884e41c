"""A swarm in its own process, for the cross-process messenger tests.

Prints one JSON object per line on stdout: ``{"event": "ready"}`` once subscribed, then
``{"event": "message", ...}`` for every message its handlers get (with the messenger's stats at
that moment). A handler for type ``boom`` raises; with ``--respond`` it answers requests
(``{"fail": true}`` in the payload makes the request handler raise). Runs until SIGTERM.
``MULTISWARM_SECRET`` in the environment turns signing on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.envelopes import Delivered
from multiswarm.keys import Keys
from multiswarm.messenger import SwarmMessenger


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


async def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--swarm", required=True)
    p.add_argument("--agent", action="append", default=[])
    p.add_argument("--channel", action="append", default=[])
    p.add_argument("--respond", action="store_true")
    args = p.parse_args(argv)

    settings = Settings(
        redis_url=args.url,
        redis_url_explicit=True,
        namespace=args.namespace,
        reconnect_timeout_s=30.0,
    )
    client = connect(settings)
    messenger = SwarmMessenger(
        client, Keys(args.namespace), sender=args.swarm, agents=args.agent, reconnect_timeout_s=30.0
    )

    def record(env: Delivered) -> None:
        emit(
            {
                "event": "message",
                "channel": env.channel,
                "type": env.type,
                "sid": env.sid,
                "id": env.id,
                "sender": env.sender,
                "target": env.target,
                "payload": env.payload,
                "stats": messenger.stats(),
            }
        )

    async def boom(env: Delivered) -> None:
        raise RuntimeError(f"handler failure on purpose ({env.id})")

    async def answer(env: Delivered) -> dict[str, Any]:
        if env.payload.get("fail"):
            raise ValueError("asked to fail")
        if env.payload.get("list"):
            return [1, 2]  # type: ignore[return-value]  # (a handler's bug, on purpose)
        return {"pid": os.getpid(), "echo": env.payload, "swarm": args.swarm}

    messenger.on_message("boom", boom)
    messenger.on_message("*", record)
    if args.respond:
        messenger.on_request(answer)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await messenger.start(args.channel)
    emit({"event": "ready", "pid": os.getpid()})
    await stop.wait()
    await messenger.stop()
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
