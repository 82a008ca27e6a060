"""Writes of the store: storing an object for a user, claiming one the store has, and sweeping
what crashed uploads left behind.

An upload streams into a temporary file of the store while it is hashed (never the whole body
in memory), is checked against the hash it claims, and becomes its object by one atomic rename;
only then is its row written. So a crash at any point leaves no half object visible: at worst a
temporary file, which `remove_stale_temp_files` deletes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Protocol

from django.conf import settings
from django.db import transaction

from dcp.protocol.values import is_sha256
from portal.users.models import User

from .errors import StoreError, describe_bytes
from .files import object_path, temp_dir
from .models import Ownership, StoredObject
from .selectors import object_of, used_bytes

CHUNK_BYTES = 1024 * 1024  # read, hashed and written this much at a time
STALE_TEMP_AGE = timedelta(days=1)  # no upload runs this long: its temporary file is a leftover
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def check_upload(*, sha256: str, size: int) -> None:
    """Refuse, before anything is read, an object name or a size the store does not take."""
    if not is_sha256(sha256):
        raise StoreError(
            400, "EINVALID", "an object of the store is named by its SHA-256 in 64 lowercase hex"
        )
    limit = settings.STORE_MAX_FILE_BYTES
    if size > limit:
        raise StoreError(
            413,
            "ETOOLARGE",
            f"an object of {describe_bytes(size)} is over the store's limit of "
            f"{describe_bytes(limit)} a file (STORE_MAX_FILE_BYTES)",
        )


def put_object(
    *, user: User, sha256: str, size: int, stream: Readable
) -> tuple[StoredObject, bool]:
    """Store the `size` bytes of `stream` as the object `sha256`, owned by `user`.

    Returns (object, True) for a new object. When the store has it already nothing is read:
    `user` owns it too, (object, False). StoreError for a name or size the store refuses, a
    user over their quota, or bytes that do not hash to `sha256` (nothing is stored then).
    """
    check_upload(sha256=sha256, size=size)
    existing = object_of(sha256)
    if existing is not None:
        return own_object(user=user, stored=existing), False
    check_quota(user, size)
    temp = receive(sha256=sha256, size=size, stream=stream)
    try:
        return _commit(user, sha256, size, temp), True
    finally:
        temp.unlink(missing_ok=True)


def claim_object(*, user: User, sha256: str) -> StoredObject:
    """Make `user` an owner of an object the store has, without its bytes (the store serves it
    to anyone anyway; owning it lets their jobs reference it and counts it in their quota)."""
    stored = object_of(sha256)
    if stored is None:
        raise StoreError(404, "ENOTFOUND", f"the store has no object {sha256}: send its bytes")
    return own_object(user=user, stored=stored)


@transaction.atomic
def own_object(*, user: User, stored: StoredObject) -> StoredObject:
    """`user` owns `stored` (once, however often asked), within their quota."""
    # One quota check at a time per user: two uploads at once cannot both pass it.
    User.objects.select_for_update().filter(pk=user.pk).exists()
    if not Ownership.objects.filter(user=user, stored_object=stored).exists():
        check_quota(user, stored.size)
        Ownership.objects.create(user=user, stored_object=stored)
    return stored


def check_quota(user: User, size: int) -> None:
    """Refuse `size` more bytes for a user whose objects would then pass the per-user limit."""
    used, limit = used_bytes(user), settings.STORE_MAX_BYTES_PER_USER
    if used + size > limit:
        raise StoreError(
            413,
            "EQUOTA",
            f"storing {describe_bytes(size)} more would make {describe_bytes(used + size)} "
            f"stored by you, over the limit of {describe_bytes(limit)} a user "
            "(STORE_MAX_BYTES_PER_USER)",
        )


def receive(*, sha256: str, size: int, stream: Readable) -> Path:
    """The `size` bytes of `stream` in a temporary file of the store, checked against
    `sha256`; StoreError, and no file left behind, when they are short or hash otherwise."""
    descriptor, name = tempfile.mkstemp(prefix=f"{sha256[:16]}-", suffix=".part", dir=temp_dir())
    path = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as file:
            digest = _copy(stream, file, size)
        if digest != sha256:
            raise StoreError(
                409,
                "EHASHMISMATCH",
                f"the bytes sent hash to {digest}, not to {sha256}: nothing was stored",
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _copy(stream: Readable, file: BinaryIO, size: int) -> str:
    """Copy `size` bytes of `stream` into `file`, synced to disk; their SHA-256 in hex."""
    digest = hashlib.sha256()
    received = 0
    while received < size:
        chunk = stream.read(min(CHUNK_BYTES, size - received))
        if not chunk:
            break
        digest.update(chunk)
        file.write(chunk)
        received += len(chunk)
    if received != size:
        raise StoreError(
            400, "EINVALID", f"the body ended after {received} of its {size} bytes: send it whole"
        )
    file.flush()
    os.fsync(file.fileno())
    return digest.hexdigest()


def _commit(user: User, sha256: str, size: int, temp: Path) -> StoredObject:
    """Make a checked temporary file the object `sha256` (one atomic rename), then its row."""
    path = object_path(sha256)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, path)  # an upload of the same object beside this one wrote the same bytes
    stored, _ = StoredObject.objects.get_or_create(sha256=sha256, defaults={"size": size})
    return own_object(user=user, stored=stored)


def remove_stale_temp_files(*, older_than: timedelta = STALE_TEMP_AGE) -> int:
    """Delete the temporary files of uploads whose process died; returns how many."""
    deadline = time.time() - older_than.total_seconds()
    removed = 0
    for path in temp_dir().glob("*.part"):
        try:
            if path.stat().st_mtime < deadline:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue  # finished (or swept) meanwhile
    return removed
