"""Explicit handler registration (multiswarm.handlers) and how an agent resolves a task's
handler with it: registered names run, prefixes are an opt-in, anything else is refused."""

from __future__ import annotations

from typing import Any

import pytest

import multiswarm
from multiswarm.agent_runtime import _failure, resolve
from multiswarm.errors import HandlerError, HandlerNotRegistered
from multiswarm.handlers import import_handlers, registered, registered_names


def test_the_decorator_registers_under_module_and_function_or_a_given_name() -> None:
    import_handlers(["multiswarm.demo_tasks", "tests.handlers.registered"])
    from tests.handlers import registered as module

    assert registered("tests.handlers.registered:where") is module.where
    assert registered("tests.handlers:renamed") is module.named
    assert registered("tests.handlers.registered:named") is None  # only under its given name
    assert {"tests.handlers.registered:where", "multiswarm.demo_tasks:noop"} <= set(
        registered_names()
    )


def test_bad_names_and_clashing_registrations_are_refused() -> None:
    def f(payload: Any, ctx: Any) -> None:
        return None

    with pytest.raises(HandlerError, match=r"package\.module:function"):
        multiswarm.handler("parse")(f)
    with pytest.raises(HandlerError, match="takes a name"):
        multiswarm.handler(42)  # type: ignore[call-overload]
    multiswarm.handler("tests.unit:clash")(f)
    multiswarm.handler("tests.unit:clash")(f)  # the same function again (a re-import): fine

    def g(payload: Any, ctx: Any) -> None:
        return None

    with pytest.raises(HandlerError, match="already registered"):
        multiswarm.handler("tests.unit:clash")(g)


def test_a_module_that_cannot_be_imported_says_which_and_where_to_look() -> None:
    with pytest.raises(HandlerError, match=r"'tests\.no_such_module'.*PYTHONPATH"):
        import_handlers(["tests.no_such_module"])


def test_unregistered_handlers_are_refused_with_how_to_register_them() -> None:
    import_handlers(["tests.handlers.registered"])
    assert resolve("tests.handlers.registered:where", ()) is registered(
        "tests.handlers.registered:where"
    )
    with pytest.raises(HandlerNotRegistered) as e:
        resolve("tests.handlers:fail_while_file_exists", ())
    text = str(e.value)
    assert "'tests.handlers:fail_while_file_exists' is not registered" in text
    assert "@multiswarm.handler in tests.handlers" in text and "--import tests.handlers" in text
    # the refusal is not the task's fault: the worker hands it back (attempt not counted)
    assert _failure(e.value) == ("refused", text)
    with pytest.raises(HandlerNotRegistered, match="nor under an allowed prefix"):
        resolve("os:system", ("tests.",))


def test_prefixes_are_an_opt_in_and_a_missing_function_under_one_is_permanent() -> None:
    fn = resolve("tests.handlers:fail_while_file_exists", ("tests.handlers:",))
    assert fn.__name__ == "fail_while_file_exists"
    with pytest.raises(HandlerError) as e:
        resolve("tests.handlers:nope", ("tests.",))
    assert not isinstance(e.value, HandlerNotRegistered)
    assert _failure(e.value)[0] == "permanent"
