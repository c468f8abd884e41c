"""The README's shell examples run as printed (besides the Python example of
test_readme_example.py): the `recover` block against an interrupted swarm, and the operations
API block (tokens, `run api`, the two curl calls). Each block is read from README.md, so the test
breaks when the README does; the API's port 8700 is the one substitution (to a free port)."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest

from multiswarm import Multiswarm
from multiswarm.redis_server import RedisServer, environment_without_redis, free_port
from multiswarm.registry import swarm_spec
from tests.integration.test_readme_example import block

pytestmark = pytest.mark.slow


def _env(redis_server: RedisServer, namespace: str) -> dict[str, str]:
    return {
        **environment_without_redis(),
        "MULTISWARM_REDIS_URL": redis_server.url,
        "MULTISWARM_NAMESPACE": namespace,
    }


async def test_recover_block_runs_as_printed(redis_server: RedisServer, namespace: str) -> None:
    # a swarm "parsers" whose only worker left: interrupted, with state to recover from
    async with await Multiswarm.connect(redis_server.url, namespace) as ms:
        await ms.registry.host_swarms("w1", {}, [swarm_spec("parsers", ["parse"])])
        await ms.save_state("parsers", {"done": 3})
        await ms.registry.host_swarms("w1", {}, [])
        assert (await ms.get_swarm("parsers")).status == "interrupted"
    lines = [line for line in block("multiswarm-cli recover list", "bash").splitlines() if line]
    assert len(lines) == 4 and all(line.startswith("multiswarm-cli recover ") for line in lines)
    env = _env(redis_server, namespace)
    for line in lines:
        run = subprocess.run(
            ["bash", "-c", line], env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, (line, run.stdout, run.stderr)
    async with await Multiswarm.connect(redis_server.url, namespace) as ms:
        assert await ms.recovery_log("parsers")  # apply recovered it (and waits for a host)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_api_block_runs_as_printed(redis_server: RedisServer, namespace: str) -> None:
    port = free_port()
    text = block("`demo --api-port 8700` does too", "bash").replace("8700", str(port))
    lines = [line for line in text.splitlines() if line.strip()]
    exports = [line for line in lines if line.startswith("export ")]
    serve = next(line for line in lines if line.startswith("multiswarm-cli run api"))
    calls = "\n".join(lines[lines.index(serve) + 1 :])  # the two curl calls
    # the export lines run once; the API and the curl calls share what they exported
    made = subprocess.run(
        ["bash", "-c", "\n".join([*exports, "env"])], capture_output=True, text=True, check=True
    )
    tokens = dict(
        line.split("=", 1) for line in made.stdout.splitlines() if line.startswith("MULTISWARM_API")
    )
    assert len(tokens) == 2 and all(len(t) == 48 for t in tokens.values())
    env = {**_env(redis_server, namespace), **tokens}
    with subprocess.Popen(
        ["bash", "-c", f"exec {serve}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as api:
        try:
            deadline = time.monotonic() + 60
            while not _answers(port):
                assert api.poll() is None and time.monotonic() < deadline, "the API did not start"
                time.sleep(0.1)
            run = subprocess.run(
                ["bash", "-c", "set -e\n" + calls],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert run.returncode == 0, run.stderr
            status, submitted = _documents(run.stdout)
            assert "tasks" in status and "swarms" in status, status
            assert set(submitted) == {"id"}, submitted
        finally:
            api.terminate()
            api.wait(timeout=30)
    assert api.returncode == 0


def _documents(out: str) -> list[dict[str, object]]:
    """The JSON documents curl printed one after the other."""
    decoder = json.JSONDecoder()
    docs, i = [], 0
    while i < len(out):
        if out[i].isspace():
            i += 1
            continue
        value, i = decoder.raw_decode(out, i)
        docs.append(value)
    return docs
