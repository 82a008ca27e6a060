"""The deploy-time check: a job may reference only blobs its deployer stored (or claimed)."""

from __future__ import annotations

import io

import pytest

from dcp.protocol.values import BlobRef, encode
from portal.store import services
from portal.store.selectors import foreign_or_missing_blobs

from .conftest import Person, digest

ADAS = b"ada's data" * 100
BOBS = b"bob's data" * 100


def store(person: Person, data: bytes) -> BlobRef:
    services.put_object(
        user=person.user, sha256=digest(data), size=len(data), stream=io.BytesIO(data)
    )
    return BlobRef(digest(data), len(data))


def test_blobs_the_deployer_stored_are_accepted(ada: Person) -> None:
    ref = store(ada, ADAS)
    args = encode([ref, {"nested": [ref]}])
    values = encode([1, {"data": ref}, b"small bytes inline"])
    assert foreign_or_missing_blobs(ada.user, args, values) == []


def test_a_blob_of_another_user_is_refused(ada: Person, bob: Person) -> None:
    mine, theirs = store(ada, ADAS), store(bob, BOBS)
    values = encode([mine, [theirs]])
    assert foreign_or_missing_blobs(ada.user, [], values) == [theirs.sha256]
    assert foreign_or_missing_blobs(bob.user, [], values) == [mine.sha256]


def test_a_claimed_blob_is_the_claimers_too(ada: Person, bob: Person) -> None:
    theirs = store(bob, BOBS)
    services.claim_object(user=ada.user, sha256=theirs.sha256)
    assert foreign_or_missing_blobs(ada.user, encode([theirs])) == []


def test_a_missing_blob_or_a_wrong_size_is_refused(ada: Person) -> None:
    ref = store(ada, ADAS)
    missing = BlobRef(digest(b"never stored"), 12)
    wrong_size = BlobRef(ref.sha256, ref.size + 1)
    refused = foreign_or_missing_blobs(ada.user, encode([missing, ref]), encode([wrong_size]))
    assert refused == [missing.sha256, ref.sha256]


def test_an_escaped_dict_is_not_a_reference(ada: Person) -> None:
    lookalike = {"$blob": digest(b"never stored"), "size": 12}
    assert foreign_or_missing_blobs(ada.user, encode([lookalike])) == []


def test_a_value_that_breaks_the_encoding_is_a_value_error(ada: Person) -> None:
    with pytest.raises(ValueError, match="blob reference"):
        foreign_or_missing_blobs(ada.user, [{"$blob": digest(b"x"), "size": 1, "more": 2}])
    with pytest.raises(ValueError, match="SHA-256"):
        foreign_or_missing_blobs(ada.user, [{"$blob": "not a hash", "size": 1}])
