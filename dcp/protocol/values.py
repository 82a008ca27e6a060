"""Values as they travel: JSON with tags, so that bytes round-trip and large data goes by reference.

JSON has no bytes, and a frame has room for a few MiB only. So inputs, arguments and results
become JSON by these rules, the same in the client, the scheduler and the slice runtime:

| value | JSON |
| --- | --- |
| `bytes`, `bytearray`, `memoryview` | `{"$bytes": "<base64>"}` |
| a blob reference (`BlobRef`, `dcp.Blob`) | `{"$blob": "<sha256, 64 lowercase hex>", "size": n}` |
| a dict with a key `"$bytes"`, `"$blob"` or `"$object"` | `{"$object": {<the dict, encoded>}}` |
| a tuple | a list |
| anything else JSON takes | itself (keys become strings as `json.dumps` writes them) |

A JSON object holding one of the three tag keys is a tag and must have exactly its shape; every
other object, whatever its keys (`{"$gt": 1}` too), is a plain dict. `decode()` gives back bytes
for `$bytes`, a `BlobRef` (or what the caller resolves it to) for `$blob`, and the plain dict for
`$object`. A tag is one level of nesting more than the value it stands for: `storable.MAX_DEPTH`
counts it, and every tag's text is ASCII, so an encoded value is storable when the value is.

The slice runtime loads this very file in Pyodide (beside slice.py), so it uses the standard
library only and imports nothing from dcp.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "BLOB_TAG",
    "BYTES_TAG",
    "MAX_INLINE_BYTES",
    "OBJECT_TAG",
    "TAG_KEYS",
    "BlobRef",
    "ReferenceTag",
    "decode",
    "encode",
    "is_sha256",
    "references",
]

BYTES_TAG = "$bytes"
BLOB_TAG = "$blob"
OBJECT_TAG = "$object"
SIZE_KEY = "size"
TAG_KEYS = frozenset((BYTES_TAG, BLOB_TAG, OBJECT_TAG))
# Bytes longer than this travel as a blob in the portal's store rather than inline (base64 in a
# frame); the client applies it to inputs and arguments.
MAX_INLINE_BYTES = 256 * 1024

_SHA256 = re.compile(r"[0-9a-f]{64}")
# Taken at import: a work function that patches base64 changes what it sees, not this codec.
_b64encode = base64.b64encode
_b64decode = base64.b64decode

Replace = Callable[[Any], Any]
Resolve = Callable[["BlobRef"], Any]


def is_sha256(text: object) -> bool:
    """Whether `text` names a stored object: a SHA-256 in 64 lowercase hex digits."""
    return isinstance(text, str) and _SHA256.fullmatch(text) is not None


class BlobRef:
    """A reference to an object of the portal's store: its SHA-256 and its size in bytes."""

    def __init__(self, sha256: str, size: int) -> None:
        if not is_sha256(sha256):
            raise ValueError(f"a blob is named by its SHA-256 in 64 lowercase hex, not {sha256!r}")
        if type(size) is not int or size < 0:
            raise ValueError(f"a blob's size is a whole number of bytes, not {size!r}")
        self.sha256 = sha256
        self.size = size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BlobRef):
            return NotImplemented
        return (self.sha256, self.size) == (other.sha256, other.size)

    def __hash__(self) -> int:
        return hash((self.sha256, self.size))

    def __repr__(self) -> str:
        return f"BlobRef({self.sha256[:12]}…, size={self.size})"


class ReferenceTag(dict[str, Any]):
    """`{"$blob": sha256, "size": n}` as encode() writes it: a plain JSON object to everything
    that reads it, which also keeps the reference it was made from (`ref`: a `dcp.Blob` on the
    client), so that whoever sends the value can find the bytes to upload."""

    def __init__(self, ref: BlobRef) -> None:
        super().__init__({BLOB_TAG: ref.sha256, SIZE_KEY: ref.size})
        self.ref = ref


# ------------------------------------------------------------------------------------ encode


def encode(value: Any, replace: Replace | None = None) -> Any:
    """The JSON value that carries `value` (new lists and dicts; `value` is left as it is).

    `replace(item)` is asked about every item JSON has no form for (bytes included) and returns
    the bytes to send inline or a `BlobRef` to send by reference: the client turns large bytes
    into blobs this way. TypeError or ValueError, as json.dumps raises them, for what cannot be
    carried (a set, NaN, a value that contains itself).
    """
    try:
        return _Encoder(replace).encode(value)
    except RecursionError:
        raise ValueError("the value is nested too deep, or contains itself") from None


class _Encoder:
    def __init__(self, replace: Replace | None) -> None:
        self.replace = replace

    def encode(self, value: Any) -> Any:
        if value is None or value is True or value is False:
            return value
        if isinstance(value, str):
            return str(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return _finite(value)
        if isinstance(value, list | tuple):
            return [self.encode(item) for item in value]
        if isinstance(value, dict):
            return self.encode_dict(value)
        return self.encode_other(value)

    def encode_dict(self, value: dict[Any, Any]) -> dict[str, Any]:
        encoded = {_key(key): self.encode(item) for key, item in value.items()}
        return {OBJECT_TAG: encoded} if not TAG_KEYS.isdisjoint(encoded) else encoded

    def encode_other(self, value: Any) -> Any:
        item = value if self.replace is None else self.replace(value)
        if isinstance(item, BlobRef):
            return ReferenceTag(item)
        if isinstance(item, bytes | bytearray | memoryview):
            return {BYTES_TAG: _b64encode(item).decode("ascii")}
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    return float(value)


def _key(key: Any) -> str:
    """A dict key as json.dumps writes it."""
    if isinstance(key, str):
        return str(key)
    if key is None:
        return "null"
    if key is True or key is False:
        return "true" if key else "false"
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        return float.__repr__(_finite(key))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


# ------------------------------------------------------------------------------------ decode


def decode(value: Any, resolve: Resolve | None = None) -> Any:
    """The value an encoded JSON value carries: bytes for `$bytes`, `resolve(ref)` for each
    `$blob` (the `BlobRef` itself without `resolve`), plain dicts for `$object`. ValueError
    for an object that holds a tag key but not a tag's shape."""
    if isinstance(value, list):
        return [decode(item, resolve) for item in value]
    if not isinstance(value, dict):
        return value
    if TAG_KEYS.isdisjoint(value):
        return {key: decode(item, resolve) for key, item in value.items()}
    if BYTES_TAG in value:
        return _bytes_of(value)
    if BLOB_TAG in value:
        ref = _ref_of(value)
        return ref if resolve is None else resolve(ref)
    return {key: decode(item, resolve) for key, item in _escaped(value).items()}


def references(value: Any) -> list[BlobRef]:
    """The blob references in an encoded value, each once, in order of appearance (a
    `ReferenceTag`'s own `ref`, so the client finds its `dcp.Blob`). ValueError as decode()."""
    found: dict[BlobRef, BlobRef] = {}
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(reversed(item))
        elif isinstance(item, dict):
            pending.extend(reversed(_children(item, found)))
    return list(found.values())


def _children(item: dict[str, Any], found: dict[BlobRef, BlobRef]) -> list[Any]:
    """The encoded values inside one JSON object, noting the reference it is, if it is one."""
    if TAG_KEYS.isdisjoint(item):
        return list(item.values())
    if BYTES_TAG in item:
        _bytes_of(item)
        return []
    if BLOB_TAG in item:
        ref = _ref_of(item)
        found.setdefault(ref, ref)
        return []
    return list(_escaped(item).values())


def _bytes_of(tag: dict[str, Any]) -> bytes:
    text = tag[BYTES_TAG]
    if len(tag) != 1 or not isinstance(text, str):
        raise ValueError('a bytes value is {"$bytes": "<base64>"} and nothing else')
    try:
        return _b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError('"$bytes" holds text that is not base64') from None


def _ref_of(tag: dict[str, Any]) -> BlobRef:
    if isinstance(tag, ReferenceTag):
        return tag.ref
    if set(tag) != {BLOB_TAG, SIZE_KEY}:
        raise ValueError('a blob reference is {"$blob": "<sha256>", "size": n} and nothing else')
    return BlobRef(tag[BLOB_TAG], tag[SIZE_KEY])


def _escaped(tag: dict[str, Any]) -> dict[str, Any]:
    inner = tag[OBJECT_TAG]
    if len(tag) != 1 or not isinstance(inner, dict):
        raise ValueError('an escaped dict is {"$object": {...}} and nothing else')
    return inner
