"""Deployment-wide timings stored once in Redis, so every process of a deployment agrees.

A registry started with ``HEARTBEAT_INTERVAL=3000`` and a worker on the default 30 s used to
declare each other dead over and over with no hint why. Now the first process of a namespace
stores its timings (:data:`~multiswarm.config.DEPLOYMENT_ENV`) under ``{ns}:deployment`` with
``SET NX GET`` (one atomic command: store if absent, else return what is stored); every later
process adopts the stored values, and one started with an explicitly different value refuses
to start with a line naming both. ``multiswarm-cli config set`` changes the stored values;
running processes keep theirs until they restart.
"""

from __future__ import annotations

import os
import socket
import time

import msgspec

from multiswarm.config import DEPLOYMENT_ENV, MAX_PARTITIONS, Settings
from multiswarm.connection import Client, with_retry
from multiswarm.errors import ConfigError, MessageDecodeError
from multiswarm.keys import Keys

#: Longest timing ``config set`` stores, in ms (7 days): a longer one is a typo (and one past
#: 2^63 broke every election of the deployment: Redis refuses it as a PX).
MAX_TIMING_MS = 7 * 24 * 3600 * 1000


class DeploymentConfig(msgspec.Struct, kw_only=True, frozen=True):
    """The stored timings (milliseconds) and who stored them when (``set_ms``: Unix ms)."""

    heartbeat_timeout_ms: int
    lease_ms: int
    task_lease_ms: int
    result_ttl_ms: int
    #: coordination partitions (records stored before partitions existed: 1)
    partitions: int = 1
    set_by: str = ""
    set_ms: int = 0


def proposed(settings: Settings) -> DeploymentConfig:
    """What this process would store: its own timings, signed with host and pid."""
    return DeploymentConfig(
        **{f: getattr(settings, f) for f in DEPLOYMENT_ENV},
        set_by=f"{socket.gethostname()}:{os.getpid()}",
        set_ms=int(time.time() * 1000),
    )


def _decode(raw: bytes | str) -> DeploymentConfig:
    try:
        return msgspec.json.decode(raw, type=DeploymentConfig)
    except msgspec.DecodeError as e:
        raise MessageDecodeError(f"corrupt deployment settings: {e}") from e


def conflicts(settings: Settings, stored: DeploymentConfig) -> list[str]:
    """``VAR=mine (deployment: theirs)`` for each explicitly given timing that differs."""
    return [
        f"{var}={getattr(settings, f)} (deployment: {getattr(stored, f)})"
        for f, var in DEPLOYMENT_ENV.items()
        if f in settings.explicit and getattr(settings, f) != getattr(stored, f)
    ]


async def agree(
    client: Client, settings: Settings, timeout_s: float | None = None, *, store: bool = True
) -> Settings:
    """Store this process's timings if the deployment has none (when ``store``); return
    ``settings`` with the deployment's timings.

    Role processes store (the first one of a deployment sets its timings); clients such as the
    CLI and applications only adopt what is stored, so a query run before the roles start does
    not fix the deployment's timings by accident.

    Raises
    ------
    ConfigError
        A timing given explicitly (environment, option) differs from the stored one; the
        message names each variable, both values, and who stored them.
    RedisUnavailable
        Redis did not answer within ``timeout_s`` (default: the settings' reconnect window).
    """
    key = Keys(settings.namespace).deployment
    mine = proposed(settings)
    window = settings.reconnect_timeout_s if timeout_s is None else timeout_s
    if store:
        raw = await with_retry(
            lambda: client.set(key, msgspec.json.encode(mine), nx=True, get=True), window
        )
    else:
        raw = await with_retry(lambda: client.get(key), window)
    stored = mine if raw is None else _decode(raw)  # type: ignore[arg-type]  # GET: bytes
    wrong = conflicts(settings, stored)
    if wrong:
        raise ConfigError(
            f"{', '.join(wrong)}: namespace {settings.namespace!r} uses the stored timings (set "
            f"by {stored.set_by}); start without the variable, or change the deployment with "
            "`multiswarm-cli config set`"
        )
    return settings.replace(**{f: getattr(stored, f) for f in DEPLOYMENT_ENV})


async def current(client: Client, settings: Settings) -> DeploymentConfig | None:
    """The stored timings, or None when no process has stored any yet."""
    key = Keys(settings.namespace).deployment
    raw = await with_retry(lambda: client.get(key), settings.reconnect_timeout_s)
    return None if raw is None else _decode(raw)


async def store_timings(client: Client, settings: Settings, **changes: int) -> DeploymentConfig:
    """Overwrite the stored timings with ``changes`` (the rest: stored, else ``settings``).

    One ``SET`` of the whole record after a read: two operators changing different fields at
    the same moment may lose one change, which ``config show`` reveals; no process acts on the
    record except at its start.

    Raises
    ------
    ConfigError
        An unknown field, a value below 1 ms or above :data:`MAX_TIMING_MS`, or a partition
        count past :data:`~multiswarm.config.MAX_PARTITIONS`.
    """
    unknown = changes.keys() - DEPLOYMENT_ENV.keys()
    if unknown:
        raise ConfigError(f"not a deployment timing: {', '.join(sorted(unknown))}")
    bad = [f"{k}={v}" for k, v in changes.items() if not 1 <= v <= MAX_TIMING_MS]
    if bad:
        raise ConfigError(
            f"timings must be from 1 ms to {MAX_TIMING_MS} ms (7 days): {', '.join(bad)}"
        )
    base = await current(client, settings) or proposed(settings)
    if not 1 <= changes.get("partitions", 1) <= MAX_PARTITIONS:
        # (a drained, stopped deployment may change it: README, Scaling; past the most, every
        # process started later would refuse to start)
        raise ConfigError(f"partitions must be from 1 to {MAX_PARTITIONS}")
    merged: dict[str, object] = {f: getattr(base, f) for f in DEPLOYMENT_ENV}
    record = proposed(settings.replace(**{**merged, **changes}))
    key = Keys(settings.namespace).deployment
    await with_retry(lambda: client.set(key, msgspec.json.encode(record)), 30.0)
    return record
