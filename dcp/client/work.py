"""Turning a work function into the source text a worker's sandbox runs.

A worker runs the source in a fresh namespace and calls the top-level callable named `work`,
else the last top-level `def`. So a Python function is shipped as its own source (decorators
stripped), a lambda as `work = lambda ...`, and nothing of the caller's module goes along.
GPU kernels in a Python work function are translated here once before anything runs (see
`check_gpu_kernels`), so a kernel that cannot run on a GPU fails at once, naming its line.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import DCPError
from ..protocol.gpu_use import uses_gpu

__all__ = ["LANGUAGES", "SourceOrigin", "check_gpu_kernels", "work_spec"]

Work = Callable[..., Any] | str
LANGUAGES = {"python": "python", "py": "python", "js": "js", "javascript": "js"}

_SUGGEST_DEF = "define the work function with def in a .py file, or pass its source as a string"


@dataclass(frozen=True)
class SourceOrigin:
    """Where a work function's source came from: the file, and the line its first line is
    there (a source string is its own file, `<work function>`, as in workers' tracebacks)."""

    filename: str = "<work function>"
    first_line: int = 1


def work_spec(work: Work, language: str = "python") -> dict[str, str]:
    """The protocol's `work` object, `{"language", "source"}`, checked as far as we can here:
    a Python work function's GPU kernels too (`check_gpu_kernels`)."""
    wire_language = LANGUAGES.get(str(language).lower())
    if wire_language is None:
        raise DCPError("EINVALID", f"language must be 'python' or 'js', not {language!r}")
    if isinstance(work, str):
        spec = {"language": wire_language, "source": _source_text(work, wire_language)}
        check_gpu_kernels(spec)
        return spec
    if wire_language == "js":
        raise DCPError("EINVALID", "a JavaScript work function must be given as a source string")
    source, origin = _function_source(work)
    spec = {"language": "python", "source": source}
    check_gpu_kernels(spec, origin)
    return spec


def check_gpu_kernels(work: dict[str, str], origin: SourceOrigin | None = None) -> None:
    """Translate the GPU kernels (`@gpu.kernel` defs) of a Python work function, as workers
    will, and raise EINVALID naming the line (in `origin`'s file) of the first that cannot run
    on a GPU. Only a source that uses `dcp.gpu` or mentions "kernel" pays for the translator."""
    if work["language"] != "python":
        return
    source = work["source"]
    if not uses_gpu("python", source) and "kernel" not in source:
        return
    from ..runtime.wgsl import check_kernels  # the translator only when there may be kernels

    origin = origin or SourceOrigin()
    try:
        check_kernels(source, filename=origin.filename, first_line=origin.first_line)
    except SyntaxError as exc:  # a KernelError: says the file and line
        message = f"a GPU kernel of the work function cannot run on a GPU: {exc}"
        raise DCPError("EINVALID", message) from None


def function_source(work: Callable[..., Any]) -> str:
    """The self-contained source of a Python function: its def (no decorators) or lambda."""
    return _function_source(work)[0]


def _function_source(work: Callable[..., Any]) -> tuple[str, SourceOrigin]:
    """function_source(), and where that source's first line is in the function's file."""
    function = inspect.unwrap(work) if callable(work) else work
    if not isinstance(function, types.FunctionType):
        raise DCPError(
            "EINVALID",
            f"work must be a Python function or a source string, not {type(work).__name__}",
        )
    _refuse_closure(function)
    filename = inspect.getsourcefile(function) or function.__code__.co_filename
    if function.__name__ == "<lambda>":
        return _lambda_source(function), SourceOrigin(filename, function.__code__.co_firstlineno)
    source, line = _def_source(function)
    return source, SourceOrigin(filename, line)


def _source_text(source: str, language: str) -> str:
    text = textwrap.dedent(source).strip("\n") + "\n"
    if not text.strip():
        raise DCPError("EINVALID", "the work function source is empty")
    if language == "python":
        _check_python_source(text)
    return text


def _check_python_source(source: str) -> None:
    """Refuse Python source that does not compile or defines no function to call."""
    try:
        tree = ast.parse(source, "<work function>")
    except SyntaxError as exc:
        raise DCPError(
            "EINVALID",
            f"the work function source has a syntax error at line {exc.lineno}: {exc.msg}",
        ) from None
    if not any(_defines_function(node) for node in tree.body):
        raise DCPError(
            "EINVALID", "the work function source defines no function: write def work(datum)"
        )


def _defines_function(node: ast.stmt) -> bool:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return True
    targets = node.targets if isinstance(node, ast.Assign) else []
    return any(isinstance(target, ast.Name) and target.id == "work" for target in targets)


def _refuse_closure(function: types.FunctionType) -> None:
    free = function.__code__.co_freevars
    if free:
        names = ", ".join(free)
        raise DCPError(
            "EINVALID",
            f"work function {function.__name__} uses variables of the function around it "
            f"({names}), which do not travel to workers: pass them with args=[...]",
        )


def _raw_source(function: types.FunctionType) -> tuple[str, int]:
    """The function's source lines as inspect reads them, and the line they start at."""
    try:
        lines, first_line = inspect.getsourcelines(function)
    except (OSError, TypeError):
        raise DCPError(
            "EINVALID",
            f"cannot read the source of work function {function.__name__}: " + _SUGGEST_DEF,
        ) from None
    return textwrap.dedent("".join(lines)), first_line


def _def_source(function: types.FunctionType) -> tuple[str, int]:
    """The function's def statement alone (decorators are dropped, they would not exist
    there), and the line of its file where the def is."""
    source, first_line = _raw_source(function)
    try:
        node = ast.parse(source).body[0]
    except (SyntaxError, IndexError):
        raise DCPError(
            "EINVALID",
            f"cannot parse the source of work function {function.__name__}: " + _SUGGEST_DEF,
        ) from None
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        raise DCPError("EINVALID", f"cannot find the def of {function.__name__}: " + _SUGGEST_DEF)
    lines = source.splitlines()[node.lineno - 1 : node.end_lineno]
    return textwrap.dedent("\n".join(lines)) + "\n", first_line + node.lineno - 1


def _lambda_source(function: types.FunctionType) -> str:
    """`work = lambda ...` for a lambda whose text can be told apart on its line, else an error."""
    segments = {
        segment
        for segment in _lambda_segments(_raw_source(function)[0])
        if _same_code(segment, function.__code__)
    }
    if len(segments) != 1:
        raise DCPError("EINVALID", "cannot extract this lambda's source cleanly: " + _SUGGEST_DEF)
    return f"work = {segments.pop()}\n"


def _lambda_segments(source: str) -> list[str]:
    """The text of every lambda in the lines inspect returned (they may be a fragment)."""
    for candidate in (source, f"(\n{source}\n)"):
        try:
            tree = ast.parse(candidate)
        except SyntaxError:
            continue
        return [
            ast.get_source_segment(candidate, node) or ""
            for node in ast.walk(tree)
            if isinstance(node, ast.Lambda)
        ]
    return []


def _same_code(segment: str, code: types.CodeType) -> bool:
    """Whether `segment` compiles to the same lambda as `code` (told apart by bytecode)."""
    try:
        compiled = compile(f"({segment})", "<lambda>", "eval")
    except SyntaxError:
        return False
    lambdas = [const for const in compiled.co_consts if isinstance(const, types.CodeType)]
    return any(
        candidate.co_code == code.co_code
        and candidate.co_names == code.co_names
        and candidate.co_varnames == code.co_varnames
        and candidate.co_consts == code.co_consts
        for candidate in lambdas
    )
