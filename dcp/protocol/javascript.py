"""Renders the protocol's numbers and message names for the browser's protocol.js.

The browser worker cannot import Python, so its copy of the protocol
(worker_static/protocol-constants.js, re-exported by protocol.js) is generated from this
package, and tests/worker_js/test_protocol_js.py fails when the committed file differs from
what `render()` gives. After changing the protocol, run:

    python -m dcp.protocol.javascript > worker_static/protocol-constants.js
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

from pydantic import BaseModel, TypeAdapter

from . import credits, limits, messages

OUTPUT_PATH = "worker_static/protocol-constants.js"

# Message unions by the name protocol.js gives them: who sends, on which socket.
MESSAGE_SETS: tuple[tuple[str, str, TypeAdapter[Any]], ...] = (
    ("WORKER_SENDS", "worker socket, worker -> scheduler", messages.worker_requests),
    ("WORKER_RECEIVES", "worker socket, scheduler -> worker", messages.worker_replies),
    ("CLIENT_SENDS", "client socket, client -> scheduler", messages.client_requests),
    ("CLIENT_RECEIVES", "client socket, scheduler -> client", messages.client_replies),
)

# Field limits of message parts the browser clips to, by the name protocol.js gives them.
FIELD_LIMITS: tuple[tuple[str, type[BaseModel], str], ...] = (
    ("MAX_ERROR_NAME_CHARS", messages.SliceError, "name"),
    ("MAX_ERROR_MESSAGE_CHARS", messages.SliceError, "message"),
    ("MAX_TRACEBACK_CHARS", messages.SliceError, "traceback"),
)

HEADER = """\
// Generated from the Python protocol package (dcp/protocol/) by dcp/protocol/javascript.py:
// do not edit. Import these through protocol.js, which adds the credit arithmetic.
"""


def render() -> str:
    """The text of worker_static/protocol-constants.js for the protocol as it stands."""
    blocks = [
        HEADER,
        _lines(_limit_lines()),
        _lines(_credit_lines()),
        *(_message_block(name, what, adapter) for name, what, adapter in MESSAGE_SETS),
    ]
    return "\n".join(blocks)


def message_types(adapter: TypeAdapter[Any]) -> list[str]:
    """The `type` of every message a union parses, sorted."""
    schema = adapter.json_schema()
    return sorted(schema["discriminator"]["mapping"])


def module_constants(module: ModuleType) -> Iterator[tuple[str, int]]:
    """The integer constants (UPPER_CASE names) of a module, in the order it defines them."""
    for name, value in vars(module).items():
        if name.isupper() and isinstance(value, int) and not isinstance(value, bool):
            yield name, value


def field_max_length(model: type[BaseModel], field: str) -> int:
    """The maxLength a model's JSON schema gives one of its fields."""
    return int(model.model_json_schema()["properties"][field]["maxLength"])


def _limit_lines() -> Iterator[str]:
    yield "// Version and size limits (dcp/protocol/limits.py, dcp/protocol/messages.py)."
    for name, value in module_constants(limits):
        yield _const(name, _number(value))
    for name, model, field in FIELD_LIMITS:
        yield _const(name, _number(field_max_length(model, field)))


def _credit_lines() -> Iterator[str]:
    yield "// Credits: the ledger counts units of 10**-CREDIT_DECIMALS credit (credits.py)."
    yield _const("CREDIT_DECIMALS", _number(credits.CREDIT_DECIMALS))
    yield _const("UNITS_PER_CREDIT", f"{_number(credits.UNITS_PER_CREDIT)}n")


def _message_block(name: str, what: str, adapter: TypeAdapter[Any]) -> str:
    comment = f"// Message types of the {what} (dcp/protocol/messages.py).\n"
    return comment + _frozen(name, message_types(adapter))


def _lines(lines: Iterable[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


def _frozen(name: str, types: Iterable[str]) -> str:
    entries = "".join(f'  {kind.upper()}: "{kind}",\n' for kind in types)
    return f"export const {name} = Object.freeze({{\n{entries}}});\n"


def _const(name: str, value: str) -> str:
    return f"export const {name} = {value};"


def _number(value: int) -> str:
    return f"{value:_}"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
