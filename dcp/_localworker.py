"""The worker process of local_exec for Python work functions (standard library only).

It mirrors the browser sandbox (worker_static/sandbox.js): the work function's source runs
once in a fresh namespace with a `progress` global, the work function is the top-level callable
named `work` (else the last top-level def), print() becomes console messages of the slice, an
invalid progress() call fails the slice, and a result must be JSON-serialisable.

Messages to the parent (over a multiprocessing connection), one dict each:
`{"type": "started" | "progress" | "console" | "result" | "error", "slice": n, ...}`.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import io
import json
import linecache
import re
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["parse_progress", "serve"]

WORK_FILENAME = "<work function>"
PROGRESS_INTERVAL_S = 0.05  # at most one progress message per interval reaches the parent
MAX_CONSOLE_CHARS = 10_000
_PERCENT_RE = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(%?)\s*", re.IGNORECASE)


def parse_progress(value: Any) -> tuple[float | None, str | None]:
    """(value, None) for a valid progress() argument, (None, why) for an invalid one."""
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None, (
            "progress() takes a number from 0 to 1, a percentage such as '50%', or nothing; "
            f"got {type(value).__name__}"
        )
    if isinstance(value, str):
        match = _PERCENT_RE.fullmatch(value)
        if match is None:
            return None, (
                f"progress() got {json.dumps(value)}, which is neither a number nor a "
                "percentage such as '50%'"
            )
        number = float(match.group(1)) / (100 if match.group(2) else 1)
    else:
        number = float(value)
    if not 0 <= number <= 1:
        return None, f"progress must be between 0 and 1 (0% and 100%); got {value}"
    return number, None


class _Console(io.TextIOBase):
    """sys.stdout or sys.stderr of a slice: each complete line becomes a console message."""

    def __init__(self, send: Callable[[dict[str, Any]], None], level: str) -> None:
        self._send = send
        self._level = level
        self._buffer = ""
        self.slice_number: int | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            line, self._buffer = self._buffer, ""
            self._emit(line)

    def _emit(self, line: str) -> None:
        message = line if len(line) <= MAX_CONSOLE_CHARS else line[:MAX_CONSOLE_CHARS] + "…"
        slice_number, level = self.slice_number, self._level
        self._send({"type": "console", "slice": slice_number, "level": level, "message": message})


class _SliceRunner:
    """Compiles the work function once and runs slices with it."""

    def __init__(self, connection: Connection, source: str, args: list[Any]) -> None:
        self.connection = connection
        self.source = source
        self.args = args
        self.work: Callable[..., Any] | None = None
        self.slice_number: int | None = None
        self.problem: str | None = None
        self.last_progress = 0.0
        self.stdout = _Console(self.send, "log")
        self.stderr = _Console(self.send, "error")

    def send(self, message: dict[str, Any]) -> None:
        self.connection.send(message)

    def progress(self, value: Any = None) -> None:
        """Report how far the slice has come: 0..1, a percentage such as '50%', or None."""
        _, problem = parse_progress(value)
        if problem is not None:
            self.problem = self.problem or problem
            raise ValueError(problem)
        now = time.monotonic()
        if now - self.last_progress >= PROGRESS_INTERVAL_S:
            self.last_progress = now
            self.send({"type": "progress", "slice": self.slice_number})

    def run(self, slice_number: int, datum: Any) -> None:
        self.send({"type": "started", "slice": slice_number})  # the progress clock starts now
        self.slice_number, self.problem, self.last_progress = slice_number, None, 0.0
        self.stdout.slice_number = self.stderr.slice_number = slice_number
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self.stdout, self.stderr  # type: ignore[assignment]
        try:
            reply = self._call(datum)
        finally:
            self.stdout.flush()
            self.stderr.flush()
            sys.stdout, sys.stderr = saved
        if reply["type"] == "result" and self.problem is not None:
            reply = _error("ValueError", self.problem, "")
        self.send({**reply, "slice": slice_number})

    def _call(self, datum: Any) -> dict[str, Any]:
        try:
            work = self.work or self._compile()
            result = work(datum, *self.args)
            if inspect.isawaitable(result):
                result = asyncio.run(_awaited(result))
            return {"type": "result", "value": _json_result(result, self.slice_number)}
        except BaseException as error:  # the work function's failure, whatever it is
            return _error_of(error)

    def _compile(self) -> Callable[..., Any]:
        tree = ast.parse(self.source, WORK_FILENAME)
        lines = self.source.splitlines(True)
        linecache.cache[WORK_FILENAME] = (len(self.source), None, lines, WORK_FILENAME)
        namespace: dict[str, Any] = {"__name__": "__work__", "progress": self.progress}
        exec(compile(tree, WORK_FILENAME, "exec"), namespace)  # noqa: S102 - the job's own code
        self.work = _pick_work_function(tree, namespace)
        return self.work


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _pick_work_function(tree: ast.Module, namespace: dict[str, Any]) -> Callable[..., Any]:
    work = namespace.get("work")
    if callable(work):
        return work  # type: ignore[no-any-return]
    defined = [
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    if defined and callable(namespace.get(defined[-1])):
        return namespace[defined[-1]]  # type: ignore[no-any-return]
    raise TypeError("the work function source defines no function: write def work(datum, *args)")


def _json_result(result: Any, slice_number: int | None) -> Any:
    try:
        return json.loads(json.dumps(result, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as error:
        raise TypeError(
            f"result of slice {slice_number} is not JSON-serialisable: {error}"
        ) from None


def _error(name: str, message: str, traceback_text: str) -> dict[str, Any]:
    return {"type": "error", "name": name, "message": message, "traceback": traceback_text}


def _error_of(error: BaseException) -> dict[str, Any]:
    report: traceback.TracebackException | None = traceback.TracebackException.from_exception(error)
    first = report
    while report is not None:  # this runner's frames say nothing about the work function
        kept = [frame for frame in report.stack if frame.filename != __file__]
        report.stack = traceback.StackSummary.from_list(kept)
        report = report.__cause__ or report.__context__
    assert first is not None
    return _error(type(error).__name__, str(error), "".join(first.format()))


def serve(connection: Connection, source: str, args: list[Any]) -> None:
    """The worker process's main loop: run each `{"slice", "datum"}` it is sent, in order."""
    import dcp  # `from dcp import progress` in a work function, as in the browser sandbox

    runner = _SliceRunner(connection, source, args)
    dcp.progress = runner.progress  # type: ignore[attr-defined]
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        runner.run(message["slice"], message["datum"])
