"""Shipping a work function: its own source, decorators stripped, or a source string."""

from __future__ import annotations

import functools

import pytest

import dcp
from dcp.client.work import function_source, work_spec

pytestmark: list[pytest.MarkDecorator] = []


def logged(function):
    @functools.wraps(function)
    def wrapper(*args):
        return function(*args)

    return wrapper


@logged
def scaled(x, factor=2):
    # a comment stays
    import math

    return math.floor(x * factor)


async def awaited(x):
    return x


def test_a_def_ships_its_own_source_without_decorators():
    source = function_source(scaled)
    assert source.startswith("def scaled(x, factor=2):\n    # a comment stays\n")
    assert "@logged" not in source
    namespace: dict = {}
    exec(source, namespace)  # the worker does the same
    assert namespace["scaled"](3) == 6


def test_a_nested_def_is_dedented():
    def inner(x):
        return x + 1

    assert function_source(inner) == "def inner(x):\n    return x + 1\n"


def test_an_async_def_is_shipped_too():
    assert function_source(awaited).startswith("async def awaited(x):")


def test_a_lambda_alone_on_its_line_is_shipped_as_work():
    job = dcp.compute_for(
        [1, 2],
        lambda x: x * 3,
    )
    assert job.work == {"language": "python", "source": "work = lambda x: x * 3\n"}


def test_a_lambda_next_to_another_is_told_apart():
    first, second = (lambda x: x + 1), (lambda y: y * 5)
    assert function_source(second) == "work = lambda y: y * 5\n"
    assert function_source(first) == "work = lambda x: x + 1\n"


def test_a_lambda_without_readable_source_asks_for_a_def():
    namespace: dict = {}
    exec("f = lambda x: x", namespace)
    with pytest.raises(dcp.DCPError, match="define the work function with def"):
        function_source(namespace["f"])


def test_a_closure_is_refused_because_its_variables_stay_here():
    factor = 3

    def uses_factor(x):
        return x * factor

    with pytest.raises(dcp.DCPError, match=r"\(factor\).*args="):
        function_source(uses_factor)


@pytest.mark.parametrize("not_a_function", [len, str, functools.partial(scaled, 2)])
def test_only_python_functions_or_strings_are_work(not_a_function):
    with pytest.raises(dcp.DCPError, match="Python function or a source string"):
        work_spec(not_a_function)


def test_a_python_source_string_is_dedented_and_checked():
    spec = work_spec("\n    def work(x):\n        return x\n")
    assert spec == {"language": "python", "source": "def work(x):\n    return x\n"}
    with pytest.raises(dcp.DCPError, match="syntax error at line 1"):
        work_spec("def work(x) return x")
    with pytest.raises(dcp.DCPError, match="defines no function"):
        work_spec("x = 1")
    with pytest.raises(dcp.DCPError, match="empty"):
        work_spec("   \n")


def test_a_javascript_source_string_ships_as_js():
    job = dcp.compute_for([1], "async function (x) { return x * 2 }", language="js")
    assert job.work == {"language": "js", "source": "async function (x) { return x * 2 }\n"}
    assert work_spec("(x) => x", "javascript")["language"] == "js"


def test_a_python_function_cannot_be_javascript_and_languages_are_checked():
    with pytest.raises(dcp.DCPError, match="JavaScript work function must be given as a source"):
        work_spec(scaled, "js")
    with pytest.raises(dcp.DCPError, match="'python' or 'js'"):
        work_spec("def work(x): return x", "ruby")
