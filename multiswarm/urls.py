"""Redis URLs: credentials kept out of every output, and the parts of the Sentinel form.

A URL may carry a password (``redis://user:password@host``, ``unix:///s.sock?password=...``).
Whatever prints or logs a URL prints :func:`redact` of it; child processes receive the URL through
the environment (``MULTISWARM_REDIS_URL``), never on their command line, which every local user
can read in ``ps`` (docs/security.md).
"""

from __future__ import annotations

import re
import urllib.parse

import msgspec

from multiswarm.errors import ConfigError

#: What a secret is replaced with.
MASK = "***"

#: Query parameters whose value is a secret (``password``, ``sentinel_password``,
#: ``ssl_password``...).
_SECRET_PARAM = re.compile(r"pass|secret|token", re.IGNORECASE)

#: Fallback for text that is not a parseable URL: the user-info part after ``scheme://``.
_USERINFO = re.compile(r"(?<=://)[^/?#@]*@")


def redact(url: str) -> str:
    """``url`` with its password (and any password-like query value) replaced by ``***``.

    The user name stays, so an operator still sees which ACL user is configured; a user-info
    without ``:`` is masked whole, because it is often a password put where the user belongs.
    Never raises: text that does not parse loses everything between ``://`` and ``@``.

    Examples
    --------
    >>> redact("redis://app:s3cret@h:6379/0")
    'redis://app:***@h:6379/0'
    >>> redact("unix:///run/redis.sock?db=1&password=s3cret")
    'unix:///run/redis.sock?db=1&password=***'
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return _USERINFO.sub(MASK + "@", url)
    if "://" not in url:
        return url  # not a URL: nothing that could hold credentials
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hosts}" if colon else f"{MASK}@{hosts}"
    query = "&".join(
        f"{name}={MASK}" if _SECRET_PARAM.search(urllib.parse.unquote(name)) else item
        for item in parts.query.split("&")
        if item
        for name in [item.partition("=")[0]]
    )
    # built by hand: urlunsplit would turn "unix:///path" into "unix:/path"
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


class SentinelTarget(msgspec.Struct, frozen=True):
    """The parts of ``redis+sentinel://[user:password@]h1:p1[,h2:p2]/service[/db]``.

    ``username``/``password`` authenticate to the master (and replicas) of ``service``; the
    Sentinels themselves are asked without credentials.
    """

    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_sentinel(url: str) -> SentinelTarget:
    """Split a Sentinel URL. Raises :class:`ConfigError` (with the URL redacted)."""
    try:
        parsed = urllib.parse.urlsplit(url)
        userinfo, _, hostlist = parsed.netloc.rpartition("@")
        sentinels = _hosts(hostlist)
        parts = [p for p in parsed.path.split("/") if p]
        db = int(parts[1]) if len(parts) > 1 else 0
    except ValueError as e:
        raise ConfigError(f"cannot parse Sentinel URL {redact(url)!r}: {e}") from None
    if not parts:
        raise ConfigError(
            f"cannot parse Sentinel URL {redact(url)!r}: a master (service) name is needed "
            "after the hosts"
        )
    user, colon, password = userinfo.partition(":")
    return SentinelTarget(
        sentinels=sentinels,
        service=urllib.parse.unquote(parts[0]),
        db=db,
        username=urllib.parse.unquote(user) or None,
        password=urllib.parse.unquote(password) if colon and password else None,
    )


class ClusterSeeds(msgspec.Struct, frozen=True):
    """The parts of ``redis+cluster://[user:password@]h1:p1[,h2:p2...]``: seed nodes a client
    asks for the slot map (any one that answers is enough), and the ACL user of every node."""

    nodes: list[tuple[str, int]]
    username: str | None = None
    password: str | None = None


def _hosts(hostlist: str) -> list[tuple[str, int]]:
    out = []
    for item in hostlist.split(","):
        host, _, port = item.rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


def parse_cluster(url: str) -> ClusterSeeds:
    """Split a cluster URL. Raises :class:`ConfigError` (with the URL redacted)."""
    try:
        parsed = urllib.parse.urlsplit(url)
        userinfo, _, hostlist = parsed.netloc.rpartition("@")
        nodes = _hosts(hostlist)
    except ValueError as e:
        raise ConfigError(
            f"cannot parse cluster URL {redact(url)!r}: {e} (expected host:port[,host:port])"
        ) from None
    user, colon, password = userinfo.partition(":")
    return ClusterSeeds(
        nodes=nodes,
        username=urllib.parse.unquote(user) or None,
        password=urllib.parse.unquote(password) if colon and password else None,
    )


def tls_verification_off(url: str) -> bool:
    """True when a ``rediss://`` URL turns certificate or host-name verification off
    (``ssl_cert_reqs=none|optional``, ``ssl_check_hostname=false``)."""
    if not url.startswith("rediss://"):
        return False
    query = {
        k.lower(): v[-1].lower()
        for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).items()
    }
    return query.get("ssl_cert_reqs") in ("none", "optional") or query.get(
        "ssl_check_hostname"
    ) in ("false", "no", "0", "n", "f")
