"""Request bodies as strict JSON: what the database can store, the same on every backend.

Python's json module accepts NaN and Infinity, strings with NUL characters and lone
surrogates, and any depth; PostgreSQL stores none of them, so they are refused here (400).
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest
from ninja.parser import Parser

MAX_DEPTH = 64


class StrictJsonParser(Parser):
    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        value = json.loads(request.body, parse_constant=_no_constants)
        check_storable(value)
        return value  # type: ignore[no-any-return]


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check_storable(value: Any) -> None:
    """Raise ValueError for values nested too deep or text no database column stores."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"values are nested more than {MAX_DEPTH} deep")
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                pending.append((child, depth + 1))
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise ValueError("text may not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
