"""TLS and the least-privilege ACL user of ``deploy/acl.conf``, on real redis-server processes.

The certificates (a CA, and server certificates it signs) are made here with ``cryptography``.
The demo runs as the ACL user over plain TCP and over TLS and must stay verified with nothing
lost; the server's ACL LOG must show no command or key the user was refused.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.exceptions

from multiswarm.config import Settings
from multiswarm.connection import connect
from multiswarm.errors import ScriptError
from multiswarm.keys import Keys
from multiswarm.redis_server import RedisServer, TlsFiles, environment_without_redis
from multiswarm.registry import SwarmRegistry, swarm_spec
from multiswarm.script_library import lua_dir, sources
from multiswarm.scripts import Scripts

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

ACL_CONF = Path(__file__).resolve().parents[2] / "deploy" / "acl.conf"
USER, PASSWORD = "multiswarm", f"acl-{uuid.uuid4().hex}"
ADMIN, ADMIN_PASSWORD = "admin", f"adm-{uuid.uuid4().hex}"


# -- certificates --------------------------------------------------------------------------------
def _name(common: str) -> Any:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: Path, key: Any, cert: Any) -> None:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_certificates(folder: Path, names: list[str]) -> TlsFiles:
    """A CA, and a server certificate it signs for ``names`` (IP addresses or DNS names)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("multiswarm test CA"))
        .issuer_name(_name("multiswarm test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[Any] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "ca", ca_key, ca)
    _write(folder / "server", key, cert)
    return TlsFiles(
        cert_file=str(folder / "server.pem"),
        key_file=str(folder / "server.key"),
        ca_file=str(folder / "ca.pem"),
    )


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certificates(tmp_path_factory.mktemp("tls"), ["127.0.0.1", "localhost"])


# -- the ACL file ----------------------------------------------------------------------------------
def acl_rules() -> list[str]:
    """The rules of the ``multiswarm`` user in deploy/acl.conf."""
    for line in ACL_CONF.read_text().splitlines():
        words = line.split()
        if words[:2] == ["user", USER]:
            return words[2:]
    raise AssertionError(f"no user {USER} in {ACL_CONF}")


def acl_file(folder: Path, namespace: str = "swarm") -> Path:
    """deploy/acl.conf as an operator installs it: the user's password set and turned on (the
    shipped file has it off, with no password), the namespace's patterns if it is not
    ``swarm``, and an admin user of the test's own to read the ACL LOG."""
    text = ACL_CONF.read_text()
    assert f"user {USER} off resetpass " in text
    text = text.replace(f"user {USER} off resetpass ", f"user {USER} on >{PASSWORD} ")
    text = (
        text.replace("~{swarm}:*", f"~{{{namespace}}}:*")
        .replace("~{swarm:p*", f"~{{{namespace}:p*")
        .replace("~swarm:*", f"~{namespace}:*")
        .replace("&swarm:*", f"&{namespace}:*")
        .replace("&{swarm}:wake:*", f"&{{{namespace}}}:wake:*")
        .replace("&{swarm:p*", f"&{{{namespace}:p*")
    )
    path = folder / "users.acl"
    path.write_text(text + f"user {ADMIN} on >{ADMIN_PASSWORD} ~* &* +@all\n")
    path.chmod(0o600)
    return path


def refusals(server: RedisServer) -> list[dict[str, Any]]:
    """The server's ACL LOG entries for the multiswarm user (commands or keys refused)."""
    admin = redis.Redis(
        port=server.port,
        username=ADMIN,
        password=ADMIN_PASSWORD,
        ssl=server.tls is not None,
        ssl_ca_certs=server.tls.ca_file if server.tls else None,
    )
    try:
        entries: list[dict[Any, Any]] = admin.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "LOG", "1000"
        )
    finally:
        admin.close()
    out = []
    for e in entries:
        d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in e.items()}
        if d["username"] in (USER, USER.encode()):
            out.append(d)
    return out


def test_acl_allows_every_command_the_lua_scripts_call() -> None:
    """A command added to a script must be added to deploy/acl.conf (and so to this review)."""
    allowed = {w[1:].lower() for w in acl_rules() if w.startswith("+")}
    called = {
        m.lower()
        for text in sources().values()
        for m in re.findall(r"redis\.p?call\(\s*['\"]([A-Za-z]+)['\"]", text)
    }
    assert called, lua_dir()
    assert called <= allowed, f"not in deploy/acl.conf: {sorted(called - allowed)}"
    assert "-@all" in acl_rules() and "~*" not in acl_rules()  # nothing beyond the list


# -- the ACL user can do its work and nothing else ------------------------------------------------
@pytest.fixture
def acl_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(aclfile=acl_file(tmp_path)) as server:
        yield server


async def test_acl_user_runs_scripts_in_its_namespace_and_nothing_else(
    acl_server: RedisServer,
) -> None:
    settings = Settings(redis_url=acl_server.url_for(USER, PASSWORD), namespace="swarm")
    client = connect(settings)
    try:
        scripts, keys = Scripts(client, reconnect_timeout_s=5), Keys("swarm")
        registry = SwarmRegistry(scripts, keys)
        await registry.register_swarm(swarm_spec("s1", ["parse"]))
        assert await registry.swarm_ids() == ["s1"]
        await client.set("{swarm}:x", 1)
        for refused in (
            client.flushall(),
            client.keys("*"),
            client.config_get("requirepass"),
            client.get("other:x"),
            client.get("{other}:index"),
            client.publish("other:chan", "x"),
            client.acl_list(),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                await refused
        # a script loaded by the user is held to the same rules inside Lua
        with pytest.raises(
            (redis.exceptions.NoPermissionError, redis.exceptions.ResponseError, ScriptError)
        ):
            await client.eval("return redis.call('SET', 'other:x', 1)", 0)
        # so is a function library it loads (multiswarm's scripts are one: FCALL)
        await client.function_load(
            "#!lua name=sneaky\nredis.register_function('sneaky', function(keys, args)\n"
            "return redis.call('SET', 'other:x', 1)\nend)"
        )
        with pytest.raises(redis.exceptions.ResponseError, match=r"can't access"):
            await client.fcall("sneaky", 0)
        with pytest.raises(redis.exceptions.NoPermissionError):
            await client.evalsha("0" * 40, 0)  # only the library's way in
        assert await client.exists("{swarm}:x") == 1  # the allowed write went through
    finally:
        await client.aclose()
    assert {r["object"] for r in refusals(acl_server)} >= {b"flushall", b"other:x"}


def test_default_user_is_off_and_a_wrong_password_is_refused(acl_server: RedisServer) -> None:
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=acl_server.port).ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=acl_server.port, username=USER, password="wrong").ping()


# -- TLS -------------------------------------------------------------------------------------------
@pytest.fixture
def tls_acl_server(tls_files: TlsFiles, tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tls=tls_files, aclfile=acl_file(tmp_path)) as server:
        yield server


async def _ping(url: str) -> bool:
    client = connect(Settings(redis_url=url, connect_timeout_ms=2000, socket_timeout_ms=2000))
    try:
        return bool(await client.ping())
    finally:
        await client.aclose()


async def test_tls_with_the_ca_authenticates_as_the_acl_user(tls_acl_server: RedisServer) -> None:
    url = tls_acl_server.url_for(USER, PASSWORD)
    assert url.startswith("rediss://") and "ssl_ca_certs=" in url
    assert await _ping(url)
    client = connect(Settings(redis_url=url))
    try:
        assert (await client.acl_whoami()) in (USER, USER.encode())
    except redis.exceptions.NoPermissionError:
        pass  # ACL WHOAMI is not granted: the refusal itself proves who we are
    finally:
        await client.aclose()


async def test_tls_certificate_is_verified_by_default(tls_acl_server: RedisServer) -> None:
    """Without the CA the server's certificate is not trusted: no connection, no fallback to
    plain text; the plain-TCP port is closed (--port 0)."""
    without_ca = tls_acl_server.url_for(USER, PASSWORD).split("?", 1)[0]
    with pytest.raises(redis.exceptions.ConnectionError, match=r"(?i)certificate verify failed"):
        await _ping(without_ca)
    with pytest.raises(redis.exceptions.ConnectionError):
        await _ping(without_ca.replace("rediss://", "redis://"))


async def test_tls_host_name_is_verified(tmp_path: Path) -> None:
    """A certificate the CA signed for another host is refused."""
    other = make_certificates(tmp_path / "other", ["db.example.net"])
    with RedisServer(tls=other, requirepass=PASSWORD) as server:
        with pytest.raises(redis.exceptions.ConnectionError, match=r"(?i)IP address mismatch"):
            await _ping(server.url_for(None, PASSWORD))
        # the same with host-name checking explicitly off connects: what was refused is the name
        assert await _ping(server.url_for(None, PASSWORD) + "&ssl_check_hostname=false")


# -- the demo as the ACL user, over TCP and over TLS ----------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus") / "json"
    shutil.copytree(
        Path(sysconfig.get_paths()["stdlib"]) / "json",
        root,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return root


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_demo_runs_as_the_least_privilege_acl_user(
    transport: str, tls_files: TlsFiles, corpus: Path, tmp_path: Path
) -> None:
    namespace = f"acl{uuid.uuid4().hex[:8]}"  # the demo would pick a random one for "swarm"
    tls = tls_files if transport == "tls" else None
    with RedisServer(tls=tls, aclfile=acl_file(tmp_path, namespace)) as server:
        env = {
            **environment_without_redis(),
            "MULTISWARM_REDIS_URL": server.url_for(USER, PASSWORD),
        }
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "multiswarm.cli",
                "--namespace",
                namespace,
                "demo",
                "--corpus",
                str(corpus),
                "--group-size",
                "4",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads(proc.stdout)
        assert report["verified"] is True and report["tasks_lost"] == 0
        assert report["duplicate_completions"] == 0 and report["namespace"] == namespace
        assert report["redis_url"].startswith(f"{'rediss' if tls else 'redis'}://{USER}:***@")
        assert refusals(server) == []
