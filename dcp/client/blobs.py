"""`dcp.Blob` and the client's side of the value encoding (dcp/protocol/values.py).

A job's inputs and arguments go to the scheduler in their JSON form: bytes travel as
`{"$bytes": "<base64>"}` when small, and as a reference to the portal's store when larger
than MAX_INLINE_BYTES or wrapped in a `dcp.Blob`; the client uploads what they reference
before the frame that carries them (dcp.client.store). The work function receives bytes either
way. Results come back in the same encoding and are decoded here.
"""

from __future__ import annotations

import hashlib
import io
import os
import weakref
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import DCPError
from ..protocol.values import MAX_INLINE_BYTES, BlobRef, decode, encode, references

__all__ = ["Blob", "known_blob", "local_value", "result_value", "wire_value"]

HASH_BLOCK_BYTES = 1024 * 1024

# Every Blob alive in this process, by hash: a frame names blobs by hash only. The wire form of
# a value keeps its Blobs alive (as `ReferenceTag.ref`) for as long as the value is kept. Each
# hash keeps each of its Blobs by identity (Blobs of the same bytes are equal, so a set would
# keep only the first): they may live and die in any order.
_known: dict[str, weakref.WeakValueDictionary[int, Blob]] = {}


def _remember(blob: Blob) -> None:
    _known.setdefault(blob.sha256, weakref.WeakValueDictionary())[id(blob)] = blob


def _alive(sha256: str) -> Blob | None:
    return next(iter(_known.get(sha256, {}).values()), None)


class Blob(BlobRef):
    """Bytes for a job that travel by reference: uploaded once to the portal's store (only if
    it does not have them already) and fetched from there by the workers that need them.

    `dcp.Blob(data)` wraps bytes; `dcp.Blob.from_path(path)` a file, read only to hash it now
    and to upload it at exec(). Use one as an input value or an argument, anywhere inside
    lists and dicts: the work function receives the bytes. Bytes larger than
    MAX_INLINE_BYTES (256 KiB) become blobs by themselves.
    """

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DCPError("EINVALID", f"dcp.Blob takes bytes, not {type(data).__name__}")
        content = bytes(data)
        super().__init__(hashlib.sha256(content).hexdigest(), len(content))
        self._content: bytes | None = content
        self.path: Path | None = None
        _remember(self)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> Blob:
        """A blob of a file's bytes; the file must not change before the job is deployed."""
        file = Path(path)
        digest, size = _hash_file(file)
        blob = cls.__new__(cls)
        BlobRef.__init__(blob, digest, size)
        blob._content, blob.path = None, file
        _remember(blob)
        return blob

    def open(self) -> BinaryIO:
        """The bytes, as a binary file to read."""
        if self._content is not None:
            return io.BytesIO(self._content)
        assert self.path is not None
        return self.path.open("rb")

    def read(self) -> bytes:
        """The bytes, all of them."""
        with self.open() as file:
            return file.read()

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path is not None else ""
        return f"Blob({self.sha256[:12]}…, size={self.size}{where})"


def _hash_file(file: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    try:
        with file.open("rb") as stream:
            while block := stream.read(HASH_BLOCK_BYTES):
                digest.update(block)
                size += len(block)
    except OSError as error:
        raise DCPError("EINVALID", f"dcp.Blob.from_path: cannot read {file}: {error}") from None
    return digest.hexdigest(), size


def known_blob(ref: BlobRef) -> Blob:
    """The Blob of this process that holds the referenced bytes; ENOBLOB when there is none."""
    blob = ref if isinstance(ref, Blob) else _alive(ref.sha256)
    if blob is None or blob.size != ref.size:
        raise DCPError(
            "ENOBLOB",
            f"blob {ref.sha256} ({ref.size} bytes) is referenced, but neither this process "
            "nor the portal's store has its bytes",
        )
    return blob


def blobs_in(*values: Any) -> list[Blob]:
    """The dcp.Blobs that these wire values reference (whoever keeps them keeps their bytes)."""
    return [ref for ref in references(list(values)) if isinstance(ref, Blob)]


def wire_value(value: Any) -> Any:
    """The JSON form of `value` as the client sends it; TypeError or ValueError for what JSON
    cannot carry."""
    return encode(value, _large_bytes_as_blobs)


def _large_bytes_as_blobs(item: Any) -> Any:
    large = isinstance(item, bytes | bytearray | memoryview) and (
        memoryview(item).nbytes > MAX_INLINE_BYTES
    )
    return Blob(item) if large else item


def local_value(wire: Any) -> Any:
    """A value in its JSON form with every blob inlined as bytes: what local_exec's workers
    take (they have no store to fetch from)."""
    return encode(decode(wire, lambda ref: known_blob(ref).read()))


def result_value(value: Any) -> Any:
    """A result as the work function returned it: bytes for `$bytes`, a `BlobRef` for a blob.
    A result that is not in the encoding (a work function of an older runtime returned an
    object with such a key) is kept as it came."""
    try:
        return decode(value)
    except ValueError:
        return value
