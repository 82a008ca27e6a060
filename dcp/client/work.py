"""Turning a work function into the source text a worker's sandbox runs.

A worker runs the source in a fresh namespace and calls the top-level callable named `work`,
else the last top-level `def`. So a Python function is shipped as its own source (decorators
stripped), a lambda as `work = lambda ...`, and nothing of the caller's module goes along.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from collections.abc import Callable
from typing import Any

from ..errors import DCPError

__all__ = ["LANGUAGES", "work_spec"]

Work = Callable[..., Any] | str
LANGUAGES = {"python": "python", "py": "python", "js": "js", "javascript": "js"}

_SUGGEST_DEF = "define the work function with def in a .py file, or pass its source as a string"


def work_spec(work: Work, language: str = "python") -> dict[str, str]:
    """The protocol's `work` object, `{"language", "source"}`, checked as far as we can here."""
    wire_language = LANGUAGES.get(str(language).lower())
    if wire_language is None:
        raise DCPError("EINVALID", f"language must be 'python' or 'js', not {language!r}")
    if isinstance(work, str):
        return {"language": wire_language, "source": _source_text(work, wire_language)}
    if wire_language == "js":
        raise DCPError("EINVALID", "a JavaScript work function must be given as a source string")
    return {"language": "python", "source": function_source(work)}


def function_source(work: Callable[..., Any]) -> str:
    """The self-contained source of a Python function: its def (no decorators) or lambda."""
    function = inspect.unwrap(work) if callable(work) else work
    if not isinstance(function, types.FunctionType):
        raise DCPError(
            "EINVALID",
            f"work must be a Python function or a source string, not {type(work).__name__}",
        )
    _refuse_closure(function)
    if function.__name__ == "<lambda>":
        return _lambda_source(function)
    return _def_source(function)


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


def _raw_source(function: types.FunctionType) -> str:
    try:
        return textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        raise DCPError(
            "EINVALID",
            f"cannot read the source of work function {function.__name__}: " + _SUGGEST_DEF,
        ) from None


def _def_source(function: types.FunctionType) -> str:
    """The function's def statement alone: decorators are dropped, they would not exist there."""
    source = _raw_source(function)
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
    return textwrap.dedent("\n".join(lines)) + "\n"


def _lambda_source(function: types.FunctionType) -> str:
    """`work = lambda ...` for a lambda whose text can be told apart on its line, else an error."""
    segments = {
        segment
        for segment in _lambda_segments(_raw_source(function))
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
