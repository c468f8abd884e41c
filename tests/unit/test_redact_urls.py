"""Redis URLs: passwords redacted wherever a URL is shown; the user name honoured in every form.

No server here: the clients are built and their connection arguments read back, which is what
redis-py sends in AUTH when it connects (tests/integration/test_security_tls_acl.py connects).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from multiswarm.config import Settings, from_env
from multiswarm.connection import connect
from multiswarm.errors import ConfigError
from multiswarm.urls import SentinelTarget, parse_sentinel, redact, tls_verification_off


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://app:s3cret@h:6379/0", "redis://app:***@h:6379/0"),
        ("redis://s3cret@h:6379/0", "redis://***@h:6379/0"),  # a lone user-info may be a password
        ("redis://app:p%40ss%3Aw@h/0", "redis://app:***@h/0"),
        (
            "rediss://app:s3cret@h:6380/0?ssl_ca_certs=/etc/ca.pem",
            "rediss://app:***@h:6380/0?ssl_ca_certs=/etc/ca.pem",
        ),
        ("unix:///run/redis.sock?db=1&password=s3cret", "unix:///run/redis.sock?db=1&password=***"),
        ("rediss://h/0?ssl_password=s3cret&x=1", "rediss://h/0?ssl_password=***&x=1"),
        (
            "redis+sentinel://app:s3cret@s1:26379,s2:26379/mymaster/0",
            "redis+sentinel://app:***@s1:26379,s2:26379/mymaster/0",
        ),
        ("redis+cluster://app:s3cret@n1:7000", "redis+cluster://app:***@n1:7000"),
        ("redis://app:s3cret@[::1:6379/0", "redis://***@[::1:6379/0"),  # unparseable: still masked
        ("not a url", "not a url"),
    ],
)
def test_redact_masks_every_password(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "s3cret" not in redact(url)


def test_parse_sentinel_keeps_user_password_service_and_db() -> None:
    assert parse_sentinel("redis+sentinel://app:p%40ss@s1:26379,[::1]:26380/my%20master/3") == (
        SentinelTarget(
            sentinels=[("s1", 26379), ("::1", 26380)],
            service="my master",
            db=3,
            username="app",
            password="p@ss",
        )
    )
    assert parse_sentinel("redis+sentinel://:pw@s1:26379/m") == SentinelTarget(
        sentinels=[("s1", 26379)], service="m", password="pw"
    )
    assert parse_sentinel("redis+sentinel://s1:26379/m").username is None


@pytest.mark.parametrize(
    "url", ["redis+sentinel://app:s3cret@s1:26379", "redis+sentinel://app:s3cret@s1:port/m"]
)
def test_a_bad_sentinel_url_is_a_config_error_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_sentinel(url)
    assert "s3cret" not in str(e.value) and "app:***@" in str(e.value)


def _kwargs(client: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = client.connection_pool.connection_kwargs
    return kwargs


async def test_plain_and_tls_urls_authenticate_as_the_user() -> None:
    client = connect(Settings(redis_url="redis://app:p%40ss@h:6379/2"))
    try:
        kw = _kwargs(client)
        assert (kw["username"], kw["password"], kw["host"], kw["db"]) == ("app", "p@ss", "h", 2)
    finally:
        await client.aclose()
    client = connect(Settings(redis_url="rediss://app:pw@h:6380/0?ssl_ca_certs=/etc/ca.pem"))
    try:
        kw = _kwargs(client)
        assert (kw["username"], kw["password"], kw["ssl_ca_certs"]) == ("app", "pw", "/etc/ca.pem")
        # verification stays on: nothing in the URL turned it off
        assert kw.get("ssl_cert_reqs", "required") == "required"
        assert kw.get("ssl_check_hostname", True) is True
        assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    finally:
        await client.aclose()


async def test_sentinel_url_authenticates_to_the_master_as_the_user() -> None:
    client = connect(Settings(redis_url="redis+sentinel://app:p%40ss@s1:26379,s2:26380/mm/1"))
    try:
        kw = _kwargs(client)
        assert (kw["username"], kw["password"], kw["db"]) == ("app", "p@ss", 1)
        pool: Any = client.connection_pool
        assert pool.service_name == "mm"
        hosts = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
        assert [(h["host"], h["port"]) for h in hosts] == [("s1", 26379), ("s2", 26380)]
        assert all(h.get("password") is None for h in hosts)  # the Sentinels are asked as anyone
    finally:
        await client.aclose()


async def test_cluster_url_authenticates_as_the_user() -> None:
    client: Any = connect(Settings(redis_url="redis+cluster://app:p%40ss@n1:7000"))
    try:
        (node,) = client.nodes_manager.startup_nodes.values()
        kw = node.connection_kwargs
        assert (kw["username"], kw["password"], kw["host"], kw["port"]) == (
            "app",
            "p@ss",
            "n1",
            7000,
        )
    finally:
        await client.aclose()


def test_tls_verification_off_is_detected_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert not tls_verification_off("rediss://h/0?ssl_ca_certs=/ca.pem")
    assert not tls_verification_off("redis://h/0?ssl_cert_reqs=none")  # not TLS at all
    assert tls_verification_off("rediss://h/0?ssl_cert_reqs=none")
    assert tls_verification_off("rediss://h/0?ssl_check_hostname=false")
    with caplog.at_level(logging.WARNING, logger="multiswarm.connection"):
        connect(Settings(redis_url="rediss://:s3cret@h/0?ssl_cert_reqs=none"))
    assert "verification is off" in caplog.text and "s3cret" not in caplog.text


def test_config_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigError) as e:
        Settings(redis_url="http://:s3cret@h/0").replace()
    assert "s3cret" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        connect(Settings(redis_url="redis://:s3cret@h/0?socket_timeout=soon"))
    assert "s3cret" not in str(e.value) and ":***@" in str(e.value)


def test_classic_password_variable_is_percent_encoded() -> None:
    settings = from_env({"REDIS_HOST": "h", "REDIS_PASSWORD": "p@ss/w:rd#1"})
    assert settings.redis_url == "redis://:p%40ss%2Fw%3Ard%231@h:6379/0"
    assert redact(settings.redis_url) == "redis://:***@h:6379/0"
