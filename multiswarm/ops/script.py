"""A Lua script declared once: its name, reply type and retry idempotency; one reply decoder.

Redis answers a script with nested lists of bytes and integers. :func:`decode` walks such a
reply guided by the declared type (``msgspec.inspect.type_info``): bytes become ``str`` where
the type says ``str``, numbers where it says ``int``/``float``, stay bytes where it says
``bytes`` (task payloads and results are msgpack bytes), a flat ``[k1, v1, k2, v2...]`` list
becomes a dict where it says ``dict``; then :func:`msgspec.convert` checks the whole shape. A
reply of another shape raises :class:`~multiswarm.errors.ScriptReplyError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import msgspec
import msgspec.inspect as mi

from multiswarm.errors import ConfigError, ReplicaAckError, ScriptError, ScriptReplyError

R = TypeVar("R")
Convert = Callable[[Any], Any]

#: Every declared script by name. :mod:`multiswarm.scripts` loads exactly these (a ``.lua``
#: file without a declaration, or a declaration without a file, is refused at load time).
DECLARED: dict[str, Script[Any]] = {}


class ScriptRunner(Protocol):
    """What runs scripts by name (:class:`multiswarm.scripts.Scripts`); a Protocol so that the
    declarations do not import the loader, which imports them."""

    async def call(
        self,
        name: str,
        keys: list[str],
        args: list[Any],
        retry: bool = True,
        *,
        request_key: str | None = None,
    ) -> Any: ...

    async def call_many(
        self, name: str, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]: ...

    async def call_when_woken(
        self,
        name: str,
        keys: list[str],
        args: list[Any],
        wake: tuple[str, str, int],
        *,
        request_key: str | None = None,
    ) -> tuple[str | None, Any]: ...


def _text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode()
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        return str(raw)
    raise ScriptReplyError(f"expected text, got {raw!r}")


def _number(kind: Callable[[str], Any]) -> Convert:
    def convert(raw: Any) -> Any:
        if isinstance(raw, (bytes, str)):
            try:
                return kind(raw.decode() if isinstance(raw, bytes) else raw)
            except ValueError:
                raise ScriptReplyError(f"expected a number, got {raw!r}") from None
        return raw

    return convert


def _bool(raw: Any) -> Any:
    return bool(int(raw)) if isinstance(raw, (int, bytes, str)) else raw


def _bytes(raw: Any) -> Any:
    return raw.encode() if isinstance(raw, str) else raw


def _same(raw: Any) -> Any:
    return raw


def _compile(info: mi.Type) -> Convert:
    """A function turning the leaves of a raw reply into what ``info`` expects (bytes to str
    where it says str...); the shape itself is checked by ``msgspec.convert`` afterwards."""
    if isinstance(info, mi.StrType):
        return _text
    if isinstance(info, (mi.IntType, mi.FloatType)):
        return _number(int if isinstance(info, mi.IntType) else float)
    if isinstance(info, mi.BoolType):
        return _bool
    if isinstance(info, mi.BytesType):
        return _bytes
    if isinstance(info, (mi.ListType, mi.VarTupleType)):
        item = _compile(info.item_type)

        def convert_list(raw: Any) -> Any:
            return [item(r) for r in _items(raw)]

        return convert_list
    if isinstance(info, (mi.TupleType, mi.StructType)):
        types = info.item_types if isinstance(info, mi.TupleType) else [f.type for f in info.fields]
        parts = [_compile(t) for t in types]

        def convert_positions(raw: Any) -> Any:
            items = _items(raw)  # extra items are kept, for convert to refuse
            return [p(r) for p, r in zip(parts, items)] + items[len(parts) :]

        return convert_positions
    if isinstance(info, mi.DictType):
        key, value = _compile(info.key_type), _compile(info.value_type)

        def convert_dict(raw: Any) -> Any:
            pairs = list(raw.items()) if isinstance(raw, dict) else _pairs(_items(raw))
            return {key(k): value(v) for k, v in pairs}

        return convert_dict
    if isinstance(info, mi.UnionType):
        others = [t for t in info.types if not isinstance(t, mi.NoneType)]
        inner = _compile(others[0]) if len(others) == 1 else _same
        nullable = info.includes_none

        def convert_optional(raw: Any) -> Any:
            return None if raw is None and nullable else inner(raw)

        return convert_optional
    return _same


def _items(raw: Any) -> list[Any]:
    if not isinstance(raw, (list, tuple, set, frozenset)):  # sets: SMEMBERS of plain reads
        raise ScriptReplyError(f"expected a list, got {raw!r}")
    return list(raw)


def _pairs(items: Sequence[Any]) -> list[tuple[Any, Any]]:
    if len(items) % 2:
        raise ScriptReplyError(f"expected key/value pairs, got {len(items)} items")
    return list(zip(items[::2], items[1::2]))


_CONVERTERS: dict[Any, Convert] = {}


def _converter(tp: Any) -> Convert:
    convert = _CONVERTERS.get(tp)
    if convert is None:
        convert = _CONVERTERS[tp] = _compile(mi.type_info(tp))
    return convert


def decode(raw: Any, tp: type[R]) -> R:
    """A raw Redis reply as a value of type ``tp``.

    Parameters
    ----------
    raw:
        What redis-py returned (bytes, ints, nested lists; or None).
    tp:
        The declared type: ``str``, ``int``, ``bytes``, ``list[str]``, ``dict[str, int]`` (from
        a flat key/value list), a ``msgspec.Struct`` with ``array_like=True`` (from a positional
        list), or nestings of these.

    Raises
    ------
    ScriptReplyError
        The reply does not have that shape.
    """
    try:
        return msgspec.convert(_converter(tp)(raw), tp)
    except (msgspec.ValidationError, TypeError, ValueError) as e:
        if isinstance(e, ScriptReplyError):
            raise
        raise ScriptReplyError(f"reply {raw!r} is not a {tp}: {e}") from e


class Script(Generic[R]):
    """One Lua script (``scripts/lua/<name>.lua``): the type of its reply and why a retry of it
    is safe.

    Every script call is retried on connection errors and timeouts, after which the first run
    may have happened (docs/decisions.md §19), so each declaration says which of two holds:

    - ``request_id``: the loader wraps the script in ``with_request_id`` (lib/01_common.lua) and
      each call carries one more key, a request key made once per logical call; a retry returns
      the first run's recorded outcome. ``custom_replay``: the script replays itself from
      ``REPLAY`` (it records something smaller than its reply).
    - ``by_nature``: why running it twice is harmless.

    ``durable``: its effect must survive a failover (submissions, results, leases, the fencing
    epoch): with ``MULTISWARM_WAIT_REPLICAS`` set it is followed by ``WAIT`` on the same
    connection (:meth:`multiswarm.scripts.Scripts.call`). ``wait_once``: short of replicas it
    does not wait again through the reconnect window (what it did runs on a clock meanwhile: a
    claim's leases) and raises at once, its reply in the error (decision 120).

    Parameters
    ----------
    name:
        File stem of the script.
    reply:
        Type its reply decodes into (see :func:`decode`).

    Raises
    ------
    ConfigError
        Neither or both of ``request_id`` and ``by_nature``; ``custom_replay`` without
        ``request_id``; ``name`` declared twice.
    """

    def __init__(
        self,
        name: str,
        reply: type[R],
        *,
        request_id: bool = False,
        custom_replay: bool = False,
        by_nature: str = "",
        durable: bool = False,
        wait_once: bool = False,
    ) -> None:
        if request_id == bool(by_nature):
            raise ConfigError(
                f"script {name} must say why a retry is safe: request_id or by_nature"
            )
        if custom_replay and not request_id:
            raise ConfigError(f"script {name}: custom_replay needs request_id")
        if name in DECLARED:
            raise ConfigError(f"script {name} declared twice")
        self.name = name
        self.reply = reply
        self.request_id = request_id
        self.custom_replay = custom_replay
        self.by_nature = by_nature
        self.durable = durable
        self.wait_once = wait_once
        DECLARED[name] = self

    async def __call__(
        self, scripts: ScriptRunner, keys: Sequence[str], args: Sequence[Any], retry: bool = True
    ) -> R:
        """Run the script and decode its reply.

        Raises
        ------
        ScriptError
            (or a subclass) when the script refused the operation.
        RedisUnavailable
            Redis stayed unreachable for the scripts' reconnect timeout.
        ScriptReplyError
            The reply is not of the declared type.
        ReplicaAckError
            Too few replicas acknowledged a durable script; its ``reply`` is decoded.
        """
        try:
            raw = await scripts.call(self.name, list(keys), list(args), retry=retry)
        except ReplicaAckError as e:
            e.reply = decode(e.reply, self.reply)
            raise
        return decode(raw, self.reply)

    async def call(
        self,
        scripts: ScriptRunner,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        wake: tuple[str, str, int] | None = None,
        request_key: str | None = None,
    ) -> tuple[str | None, R]:
        """Run the script as :meth:`__call__` does, under ``request_key`` when given (a
        replay), and with ``wake`` (stream, entry id, ms) once that stream has a newer entry
        or the time has passed (:meth:`multiswarm.scripts.Scripts.call_when_woken`). Returns
        the newest entry id read (None: no wake or none read) and the decoded reply. Raises
        as :meth:`__call__`."""
        if wake is None:
            try:
                raw = await scripts.call(self.name, list(keys), list(args), request_key=request_key)
            except ReplicaAckError as e:
                e.reply = decode(e.reply, self.reply)
                raise
            return None, decode(raw, self.reply)
        woken, raw = await scripts.call_when_woken(
            self.name, list(keys), list(args), wake, request_key=request_key
        )
        return woken, decode(raw, self.reply)

    async def many(
        self, scripts: ScriptRunner, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[R | ScriptError]:
        """Run the script once per ``(keys, args)`` in one pipelined round trip
        (:meth:`multiswarm.scripts.Scripts.call_many`): each decoded reply, or the refusal, in
        place.

        Raises
        ------
        RedisUnavailable
            Redis stayed unreachable for the scripts' reconnect timeout.
        ScriptReplyError
            A reply is not of the declared type.
        """
        out: list[R | ScriptError] = []
        for raw in await scripts.call_many(self.name, calls):
            out.append(raw if isinstance(raw, ScriptError) else decode(raw, self.reply))
        return out


def text(raw: bytes | str) -> str:
    """A field or member name read by a plain command (``hkeys``, ``smembers``) as text."""
    return decode(raw, str)
