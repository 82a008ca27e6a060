"""Reads of the store: an object by its hash, what a user stored, and the blob references of a
job that its deployer may not use."""

from __future__ import annotations

from itertools import batched
from typing import Any

from django.db.models import Sum

from dcp.protocol.values import BlobRef, references
from portal.users.models import User

from .files import object_path
from .models import Ownership, StoredObject

QUERY_BATCH = 500  # hashes per query (SQLite limits the parameters of one statement)


def object_of(sha256: str) -> StoredObject | None:
    """The stored object `sha256`, if the store has it (its row and its file)."""
    stored = StoredObject.objects.filter(pk=sha256).first()
    if stored is None or not object_path(sha256).is_file():
        return None
    return stored


def used_bytes(user: User) -> int:
    """The bytes of every object `user` owns: what counts against their quota."""
    total = Ownership.objects.filter(user=user).aggregate(total=Sum("stored_object__size"))
    return int(total["total"] or 0)


def foreign_or_missing_blobs(user: User, *values: Any) -> list[str]:
    """The hashes of the blob references in `values` (a deploy's arguments and input values,
    in the portal's value encoding, dcp/protocol/values.py) that `user` does not own: missing
    from the store, stored by other users only, or referenced with the wrong size. In order of
    appearance; ValueError for a value that breaks the encoding's rules."""
    wanted = references(list(values))
    owned: dict[str, int] = {}
    for refs in batched(wanted, QUERY_BATCH):
        rows = Ownership.objects.filter(user=user, stored_object_id__in=[r.sha256 for r in refs])
        owned.update(rows.values_list("stored_object_id", "stored_object__size"))
    refused = (ref.sha256 for ref in wanted if owned.get(ref.sha256) != ref.size)
    return list(dict.fromkeys(refused))


def missing_objects(refs: list[BlobRef]) -> set[BlobRef]:
    """The references among `refs` to objects the store lacks, or has with another size (a
    worker's result may reference only what is stored, whoever stored it)."""
    sizes: dict[str, int] = {}
    for chunk in batched(refs, QUERY_BATCH):
        rows = StoredObject.objects.filter(sha256__in=[ref.sha256 for ref in chunk])
        sizes.update(rows.values_list("sha256", "size"))
    return {ref for ref in refs if sizes.get(ref.sha256) != ref.size}
