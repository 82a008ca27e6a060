"""JSON as the portal takes it: what every database it runs on can store, the same everywhere.

Python's json module accepts NaN and Infinity (and reads 1e400 as infinity), strings with NUL
characters and lone surrogates, and any depth; PostgreSQL's jsonb stores none of them (SQLite
would, and the two backends must not differ). `loads()` reads a frame or a request body and
refuses them with a ValueError that says which rule was broken; the websockets answer it with
EINVALID, the REST API with 400.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64  # lists and objects nested deeper than this are refused


def loads(text: str | bytes) -> Any:
    """The JSON value of `text`, or ValueError when it is not JSON the portal can store."""
    value = json.loads(text, parse_constant=_no_constants)
    check_storable(value)
    return value


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
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite: 1e400 and the like are not")
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
