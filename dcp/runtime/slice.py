"""The slice runtime for Python work functions: one file, run by CPython and by Pyodide.

CPython imports it as `dcp.runtime.slice` (local workers, the synthetic worker); the browser
sandbox fetches this very file from the portal and loads it into Pyodide as `dcp_slice`. So it
uses the standard library only and imports nothing from dcp.

The rules it holds, the same everywhere a Python slice runs:

- The work function's source runs once per job in a fresh namespace (`__name__ == "__work__"`,
  a `progress` global, `from dcp import progress` too); the work function is the top-level
  callable named `work`, else the last top-level `def` / `async def`.
- A slice calls `work(datum, *args)`; an awaitable it returns is awaited.
- `progress(value)` takes a number from 0 to 1, a percentage such as "50%", or nothing; an
  invalid value raises ValueError and fails the slice even if the work function catches it.
- print() and writes to stderr become console lines of the slice (clipped at 10,000 chars).
- `from dcp import gpu` is the GPU module beside this file (gpu.py); the GPU time a slice used
  comes back with its result as `gpuMs`.
- Values travel in the value encoding (values.py beside this file in Pyodide,
  dcp.protocol.values under CPython): the datum and the arguments are decoded (bytes arrive as
  bytes), the result is encoded (bytes may be returned). A blob reference decodes to the bytes
  its host handed over with `add_blob()` (the sandbox fetches them from the portal's store);
  local workers get blobs inline, so a reference without bytes stays a `BlobRef`.
- A result must be JSON (allow_nan=False); a failure comes back as its exception's name,
  message and traceback, with this runtime's own frames trimmed away.

Progress and console lines leave through a `Host` given by whoever runs the runtime (JSON lines
on a pipe for a local worker, the sandbox's JavaScript for Pyodide).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import json
import linecache
import re
import sys
import traceback
import types
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

__all__ = [
    "MAX_CONSOLE_CHARS",
    "WORK_FILENAME",
    "Host",
    "SliceRuntime",
    "clip_console_line",
    "compile_work",
    "error_reply",
    "install_dcp_module",
    "parse_progress",
    "pick_work_function",
]

WORK_FILENAME = "<work function>"
MAX_CONSOLE_CHARS = 10_000  # one console line; a longer one is clipped (dcp.protocol.limits)
NO_FUNCTION = "the work function source defines no function: write def work(datum, *args)"
# The file this code was compiled from, whatever name the host loaded it under.
RUNTIME_FILENAME = (lambda: None).__code__.co_filename
# The GPU module beside this file: dcp.runtime.gpu under CPython, the sandbox package's in Pyodide.
GPU_MODULE = f"{__package__}.gpu" if __package__ else None
# The value codec: dcp.protocol.values under CPython, the sandbox package's values.py in Pyodide.
_in_dcp = __package__ in (None, "", "dcp.runtime")
_values = importlib.import_module("dcp.protocol.values" if _in_dcp else f"{__package__}.values")
_NUMBER_RE = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(%?)\s*", re.IGNORECASE)

# Taken at import, before any work function runs: a work function that patches these modules
# (json.dumps, ast.parse, ...) changes what it sees itself, not how this runtime reads sources
# and encodes replies for its later slices.
_dumps = json.dumps
_loads = json.loads
_parse = ast.parse
_isawaitable = inspect.isawaitable
_TracebackException = traceback.TracebackException
_StackSummary = traceback.StackSummary
_ModuleType = types.ModuleType
_FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef)

# {"type": "result", "value"} or {"type": "error", "name", "message", "traceback"}
Reply = dict[str, Any]
Progress = Callable[..., None]


class Host(Protocol):
    """Where progress and console lines go: the local worker's pipe, or the sandbox."""

    def report_progress(self, value: float | None) -> None:
        """A valid progress() call of the running slice: 0..1, or None (still alive)."""

    def console(self, level: str, message: str) -> None:
        """One console line; `level` is "log" (stdout) or "error" (stderr)."""


# ------------------------------------------------------------------------------- progress


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
        match = _NUMBER_RE.fullmatch(value)
        if match is None:
            return None, (
                f"progress() got {_dumps(value)}, which is neither a number nor a "
                "percentage such as '50%'"
            )
        number = float(match.group(1)) / (100 if match.group(2) else 1)
    else:
        number = float(value)
    if not 0 <= number <= 1:
        return None, f"progress must be between 0 and 1 (0% and 100%); got {value}"
    return number, None


def install_dcp_module(progress: Progress) -> None:
    """Make `from dcp import progress` inside work functions mean `progress`.

    Where the dcp package is loaded (a local worker) progress is added to it and `dcp.gpu` is
    its own; elsewhere (Pyodide) a module named dcp holding progress and gpu stands in for it.
    """
    module = sys.modules.get("dcp")
    if module is None:
        module = _ModuleType("dcp", "What a work function can use where it runs.")
        sys.modules["dcp"] = module
        if GPU_MODULE is not None:
            module.gpu = sys.modules["dcp.gpu"] = importlib.import_module(GPU_MODULE)  # type: ignore[attr-defined]
    module.progress = progress  # type: ignore[attr-defined]


def take_gpu_ms() -> float:
    """Milliseconds of GPU time used since the last call (0 where the GPU module is unused)."""
    gpu = sys.modules.get(GPU_MODULE) if GPU_MODULE is not None else None
    return round(gpu.take_gpu_seconds() * 1000, 3) if gpu is not None else 0.0


# -------------------------------------------------------------------------- work function


def pick_work_function(tree: ast.Module, namespace: dict[str, Any]) -> Callable[..., Any]:
    """The top-level callable named `work`, else the last top-level def of the source."""
    work = namespace.get("work")
    if callable(work):
        return work  # type: ignore[no-any-return]
    defined = [node.name for node in tree.body if isinstance(node, _FUNCTION_NODES)]
    if defined and callable(namespace.get(defined[-1])):
        return namespace[defined[-1]]  # type: ignore[no-any-return]
    raise TypeError(NO_FUNCTION)


def compile_work(source: str, progress: Progress) -> Callable[..., Any]:
    """Run the work function's source once in a fresh namespace; returns the work function."""
    tree = _parse(source, WORK_FILENAME)
    # Tracebacks show the work function's lines, as if it were a file.
    linecache.cache[WORK_FILENAME] = (len(source), None, source.splitlines(True), WORK_FILENAME)
    namespace: dict[str, Any] = {"__name__": "__work__", "progress": progress}
    exec(compile(tree, WORK_FILENAME, "exec"), namespace)  # noqa: S102 - the job's own code
    return pick_work_function(tree, namespace)


# ---------------------------------------------------------------------------------- replies


def encode_value(result: Any, slice_number: int | None) -> Any:
    """`result` in the value encoding; TypeError (the slice fails) when JSON cannot carry it."""
    try:
        return _values.encode(result)
    except (TypeError, ValueError, RecursionError) as error:
        raise TypeError(
            f"result of slice {slice_number} is not JSON-serialisable: {error}"
        ) from None


def error_reply(error: BaseException) -> Reply:
    """The error reply of a failure, its traceback without this runtime's frames."""
    report: traceback.TracebackException | None = _TracebackException.from_exception(error)
    first = report
    while report is not None:  # chained exceptions included
        kept = [frame for frame in report.stack if frame.filename != RUNTIME_FILENAME]
        report.stack = _StackSummary.from_list(kept)
        report = report.__cause__ or report.__context__
    assert first is not None
    return _error(type(error).__name__, str(error), "".join(first.format()))


def _error(name: str, message: str, traceback_text: str) -> Reply:
    return {"type": "error", "name": name, "message": message, "traceback": traceback_text}


# ---------------------------------------------------------------------------------- console


def clip_console_line(line: str) -> str:
    """A console line cut to MAX_CONSOLE_CHARS, saying how long it was (the sandbox's rule)."""
    if len(line) <= MAX_CONSOLE_CHARS:
        return line
    marker = f"… ({len(line)} characters)"
    return line[: MAX_CONSOLE_CHARS - len(marker)] + marker


class _Console(io.TextIOBase):
    """sys.stdout or sys.stderr while the work function runs: complete lines go to the host."""

    def __init__(self, host: Host, level: str) -> None:
        self._host = host
        self._level = level
        self._buffer = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._host.console(self._level, clip_console_line(line))
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            line, self._buffer = self._buffer, ""
            self._host.console(self._level, clip_console_line(line))


# ---------------------------------------------------------------------------------- runtime


class _Slice:
    """The slice being computed, and the first invalid progress() call it made."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.problem: str | None = None


class SliceRuntime:
    """One job's work function, compiled once, and the slices computed with it."""

    def __init__(self, source: str, args: list[Any], host: Host) -> None:
        self.source = source
        self.args = args
        self.host = host
        self.work: Callable[..., Any] | None = None
        self.arguments: list[Any] = []  # args, decoded once the source is compiled
        self._blobs: dict[str, bytes] = {}  # sha256 -> the bytes of the blobs handed over
        self._slice: _Slice | None = None
        self._stdout = _Console(host, "log")
        self._stderr = _Console(host, "error")

    @classmethod
    def from_json(cls, source: str, args_json: str, host: Host) -> SliceRuntime:
        """For hosts that pass JSON text rather than objects (the sandbox)."""
        return cls(source, _loads(args_json), host)

    def add_blob(self, sha256: str, data: Any) -> None:
        """The bytes of a blob the arguments or a datum reference (bytes, or in Pyodide the
        sandbox's Uint8Array), checked by whoever fetched them: references to it decode to them."""
        to_bytes = getattr(data, "to_bytes", None) if not isinstance(data, bytes) else None
        self._blobs[sha256] = to_bytes() if callable(to_bytes) else bytes(data)

    def forget_blob(self, sha256: str) -> None:
        """Let go of a blob's bytes (the sandbox hands a datum's blobs for its slice only)."""
        self._blobs.pop(sha256, None)

    def _resolve(self, ref: Any) -> Any:
        return self._blobs.get(ref.sha256, ref)

    def progress(self, value: Any = None) -> None:
        """Report how far the slice has come: 0..1, a percentage such as '50%', or None."""
        number, problem = parse_progress(value)
        if problem is not None:
            if self._slice is not None and self._slice.problem is None:
                self._slice.problem = problem
            raise ValueError(problem)
        if self._slice is not None:  # module-level calls while compiling report nothing
            self.host.report_progress(number)

    def compile(self) -> Reply | None:
        """Run the source once; None when it gave a work function, else the error reply."""
        with self._captured():
            return self._compile()

    def compile_json(self) -> str | None:
        """compile() for the sandbox: the error reply as JSON text."""
        failure = self.compile()
        return None if failure is None else _dumps(failure)

    def run(self, slice_number: int, datum: Any) -> Reply | Awaitable[Reply]:
        """Compute one slice: its reply, or an awaitable of it for an async work function."""
        self._slice = _Slice(slice_number)
        take_gpu_ms()  # the slice's GPU time starts now
        with self._captured():
            failure = self._compile() if self.work is None else None
            if failure is not None:
                return self._finish(failure)
            try:
                assert self.work is not None
                result = self.work(_values.decode(datum, self._resolve), *self.arguments)
                if _isawaitable(result):
                    return self._settle(result)
                return self._finish(_result(result, slice_number))
            except BaseException as error:  # the work function's failure, whatever it is
                return self._finish(error_reply(error))

    def run_json(self, slice_number: int, datum_json: str) -> str | Awaitable[str]:
        """run() for the sandbox: datum and reply as JSON text (no proxies cross over)."""
        reply = self.run(slice_number, _loads(datum_json))
        if isinstance(reply, dict):
            return _reply_json(reply)
        return _dumped(reply)

    def _compile(self) -> Reply | None:
        install_dcp_module(self.progress)
        try:
            self.work = compile_work(self.source, self.progress)
            self.arguments = _values.decode(self.args, self._resolve)
        except BaseException as error:
            return error_reply(error)
        return None

    async def _settle(self, awaitable: Awaitable[Any]) -> Reply:
        assert self._slice is not None
        slice_number = self._slice.number
        with self._captured():
            try:
                return self._finish(_result(await awaitable, slice_number))
            except BaseException as error:
                return self._finish(error_reply(error))

    def _finish(self, reply: Reply) -> Reply:
        problem = self._slice.problem if self._slice is not None else None
        self._slice = None
        gpu_ms = take_gpu_ms()
        if reply["type"] == "result" and problem is not None:
            return _error("ValueError", problem, "")
        if gpu_ms and isinstance(reply, _ResultReply):
            reply["gpuMs"] = reply.gpu_ms = gpu_ms
        return reply

    def _captured(self) -> _Captured:
        return _Captured(self._stdout, self._stderr)


class _Captured:
    """sys.stdout and sys.stderr become the slice's console while the work function runs.

    A class rather than a generator-based context manager: it is entered on every slice.
    """

    __slots__ = ("saved", "stderr", "stdout")

    def __init__(self, stdout: _Console, stderr: _Console) -> None:
        self.stdout, self.stderr = stdout, stderr
        self.saved = sys.stdout, sys.stderr

    def __enter__(self) -> None:
        self.saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self.stdout, self.stderr  # type: ignore[assignment]

    def __exit__(self, *exc: object) -> None:
        self.stdout.flush()
        self.stderr.flush()
        sys.stdout, sys.stderr = self.saved


class _ResultReply(dict[str, Any]):
    """A result reply that keeps the JSON text its check made, so the sandbox's JSON reply
    does not encode the value a second time."""

    text = ""
    gpu_ms = 0.0


def _result(value: Any, slice_number: int) -> Reply:
    encoded = encode_value(value, slice_number)
    reply = _ResultReply(type="result", value=encoded)
    reply.text = _dumps(encoded, allow_nan=False)
    return reply


def _reply_json(reply: Reply) -> str:
    if isinstance(reply, _ResultReply):
        gpu = f', "gpuMs": {reply.gpu_ms!r}' if reply.gpu_ms else ""
        return '{"type": "result", "value": ' + reply.text + gpu + "}"
    return _dumps(reply)


async def _dumped(reply: Awaitable[Reply]) -> str:
    return _reply_json(await reply)
