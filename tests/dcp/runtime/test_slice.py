"""The slice runtime (dcp/runtime/slice.py) under CPython: the rules every Python slice obeys."""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import sys
from typing import Any

import pytest

from dcp.protocol.limits import MAX_CONSOLE_CHARS
from dcp.runtime import slice as runtime
from dcp.runtime.slice import SliceRuntime, parse_progress

TAKES_A_NUMBER = "progress() takes a number from 0 to 1, a percentage such as '50%', or nothing"


class Recorder:
    """A host that keeps what the runtime reports."""

    def __init__(self) -> None:
        self.progress: list[float | None] = []
        self.lines: list[tuple[str, str]] = []

    def report_progress(self, value: float | None) -> None:
        self.progress.append(value)

    def console(self, level: str, message: str) -> None:
        self.lines.append((level, message))


def run(source: str, datum: Any = None, args: list[Any] | None = None) -> tuple[dict, Recorder]:
    host = Recorder()
    slices = SliceRuntime(source, args or [], host)
    reply = slices.run(1, datum)
    if inspect.isawaitable(reply):
        reply = asyncio.run(_awaited(reply))
    return reply, host  # type: ignore[return-value]


async def _awaited(reply: Any) -> Any:
    return await reply


# ------------------------------------------------------------------------------ picking


def test_the_callable_named_work_is_the_work_function():
    source = "def work(x):\n    return 'work'\n\ndef later(x):\n    return 'later'\n"
    assert run(source)[0] == {"type": "result", "value": "work"}


def test_the_last_def_is_the_work_function_when_none_is_named_work():
    source = "def helper(x):\n    return x + 1\n\nasync def compute(x):\n    return helper(x)\n"
    assert run(source, 4)[0] == {"type": "result", "value": 5}


def test_a_lambda_assigned_to_work_is_the_work_function():
    assert run("work = lambda x, a: x * a\n", 3, [4])[0]["value"] == 12


def test_a_source_without_a_function_fails_with_a_clear_type_error():
    reply = run("x = 1\n")[0]
    assert reply["name"] == "TypeError"
    assert reply["message"] == (
        "the work function source defines no function: write def work(datum, *args)"
    )


def test_pick_work_function_ignores_callables_that_are_not_top_level_defs():
    tree = ast.parse("import math\n")
    with pytest.raises(TypeError, match="defines no function"):
        runtime.pick_work_function(tree, {"math": __import__("math"), "len": len})


def test_the_source_runs_once_per_job_as_module_work():
    host = Recorder()
    source = (
        "calls = 0\nNAME = __name__\n\n"
        "def work(x):\n    global calls\n    calls += 1\n    return [NAME, calls]\n"
    )
    slices = SliceRuntime(source, [], host)
    assert slices.compile() is None
    assert [slices.run(n, n) for n in (1, 2)] == [
        {"type": "result", "value": ["__work__", 1]},
        {"type": "result", "value": ["__work__", 2]},
    ]


# ----------------------------------------------------------------------------- progress


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (0, 0.0), (1, 1.0), (0.25, 0.25), ("50%", 0.5), (" 1e-1 ", 0.1), ("100 %", 1.0)],
)
def test_valid_progress_values_parse(value, expected):
    assert parse_progress(value) == (expected, None)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (1.5, "progress must be between 0 and 1 (0% and 100%); got 1.5"),
        ("150%", "progress must be between 0 and 1 (0% and 100%); got 150%"),
        (
            "nearly",
            "progress() got \"nearly\", which is neither a number nor a percentage such as '50%'",
        ),
        (
            True,
            f"{TAKES_A_NUMBER}; got bool",
        ),
        (
            [1],
            f"{TAKES_A_NUMBER}; got list",
        ),
    ],
)
def test_invalid_progress_values_say_why(value, problem):
    assert parse_progress(value) == (None, problem)


def test_progress_reaches_the_host_both_as_global_and_from_dcp():
    source = (
        "from dcp import progress as report\n\n"
        "def work(x):\n    progress(0.25)\n    report('50%')\n    progress()\n    return x\n"
    )
    reply, host = run(source, 7)
    assert reply == {"type": "result", "value": 7}
    assert host.progress == [0.25, 0.5, None]


def test_an_invalid_progress_fails_the_slice_even_when_caught():
    source = (
        "def work(x):\n    try:\n        progress('nearly done')\n    except ValueError:\n"
        "        pass\n    return x\n"
    )
    reply = run(source, 1)[0]
    assert reply["type"] == "error" and reply["name"] == "ValueError"
    assert '"nearly done"' in reply["message"]


def test_progress_out_of_range_raises_with_the_callers_line():
    reply = run("def work(x):\n    progress(2)\n    return x\n")[0]
    assert reply["name"] == "ValueError"
    assert "progress(2)" in reply["traceback"]


def test_progress_during_compile_reports_nothing():
    host = Recorder()
    slices = SliceRuntime("progress(0.5)\n\ndef work(x):\n    return x\n", [], host)
    assert slices.compile() is None
    assert host.progress == []


# ------------------------------------------------------------------------------ console


def test_print_and_stderr_become_console_lines_of_the_slice():
    source = (
        "import sys\nprint('compiling')\n\n"
        "def work(x):\n    print('hello', x)\n    print('careful', file=sys.stderr)\n"
        "    sys.stdout.write('no newline')\n    return x\n"
    )
    reply, host = run(source, 42)
    assert reply["value"] == 42
    assert host.lines == [
        ("log", "compiling"),
        ("log", "hello 42"),
        ("error", "careful"),
        ("log", "no newline"),
    ]
    assert not isinstance(sys.stdout, runtime._Console)  # restored after the slice


def test_a_long_console_line_is_clipped_and_says_how_long_it_was():
    _, host = run("def work(n):\n    print('x' * n)\n", 25_000)
    [(_level, line)] = host.lines
    assert len(line) == MAX_CONSOLE_CHARS == runtime.MAX_CONSOLE_CHARS
    assert line.endswith("… (25000 characters)")


# ------------------------------------------------------------------------------ results


def test_a_result_that_is_not_json_fails_the_slice():
    for source, why in (
        ("def work(x):\n    return {1, 2}\n", "set"),
        ("def work(x):\n    return float('nan')\n", "Out of range"),
    ):
        reply = run(source)[0]
        assert reply["name"] == "TypeError"
        assert reply["message"].startswith("result of slice 1 is not JSON-serialisable: ")
        assert why in reply["message"]


def test_an_async_work_function_is_awaited_with_console_and_progress():
    source = (
        "import asyncio\n\nasync def work(x):\n    await asyncio.sleep(0)\n    print('awaited')\n"
        "    progress(1)\n    return x * 3\n"
    )
    reply, host = run(source, 5)
    assert reply == {"type": "result", "value": 15}
    assert host.lines == [("log", "awaited")]
    assert host.progress == [1.0]


# ------------------------------------------------------------------------------- errors


def test_a_traceback_keeps_the_work_function_and_drops_the_runtime():
    source = "def helper(x):\n    return x / 0\n\ndef work(x):\n    return helper(x)\n"
    reply = run(source, 1)[0]
    assert reply["name"] == "ZeroDivisionError"
    assert reply["message"] == "division by zero"
    trace = reply["traceback"]
    assert trace.startswith("Traceback (most recent call last):")
    assert 'File "<work function>", line 5, in work' in trace
    assert "return x / 0" in trace
    assert runtime.RUNTIME_FILENAME not in trace and "slice.py" not in trace


def test_an_async_traceback_drops_the_runtime_too():
    reply = run("async def work(x):\n    raise KeyError(x)\n", "k")[0]
    assert reply["name"] == "KeyError"
    assert reply["traceback"].count('File "') == 1


def test_a_syntax_error_is_reported_by_compile_and_by_each_slice():
    slices = SliceRuntime("def work(x)\n    return x\n", [], Recorder())
    failure = slices.compile()
    assert failure is not None and failure["name"] == "SyntaxError"
    assert "<work function>" in failure["traceback"]
    assert slices.run(1, 0)["name"] == "SyntaxError"  # type: ignore[index]


def test_the_json_entry_points_speak_text():
    slices = SliceRuntime.from_json(
        "def work(x, a):\n    return {'sum': x + a}\n", "[2]", Recorder()
    )
    assert slices.compile_json() is None
    assert json.loads(slices.run_json(3, "40")) == {"type": "result", "value": {"sum": 42}}  # type: ignore[arg-type]
    failing = SliceRuntime.from_json("x = 1\n", "[]", Recorder())
    assert json.loads(failing.compile_json() or "{}")["name"] == "TypeError"


def test_blobs_the_host_hands_over_reach_the_work_function_as_bytes():
    table, chunk = b"\x00" * 10 + b"table", b"datum bytes"
    table_ref = {"$blob": "a" * 64, "size": len(table)}
    chunk_ref = {"$blob": "b" * 64, "size": len(chunk)}
    slices = SliceRuntime(
        "def work(x, table):\n    return [x[:5], table[-5:], type(x).__name__]\n",
        [table_ref],
        Recorder(),
    )
    slices.add_blob("a" * 64, bytearray(table))
    slices.add_blob("b" * 64, chunk)
    reply = slices.run(1, chunk_ref)
    assert reply == {
        "type": "result",
        "value": [{"$bytes": "ZGF0dW0="}, {"$bytes": "dGFibGU="}, "bytes"],
    }
