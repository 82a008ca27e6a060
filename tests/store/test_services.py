"""Storing objects: by hash, once for everyone, within each user's quota, never half."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import pytest

from portal.store import services
from portal.store.errors import StoreError
from portal.store.files import object_path, temp_dir
from portal.store.models import Ownership, StoredObject
from portal.store.selectors import object_of, used_bytes

from .conftest import Person, digest

DATA = b"the bytes of a data file\n" * 1000


def put(person: Person, data: bytes, sha256: str | None = None) -> tuple[StoredObject, bool]:
    return services.put_object(
        user=person.user, sha256=sha256 or digest(data), size=len(data), stream=io.BytesIO(data)
    )


def refusal(call: Any) -> StoreError:
    with pytest.raises(StoreError) as raised:
        call()
    return raised.value


class Unreadable(io.RawIOBase):
    """A body that must not be read."""

    def read(self, size: int = -1, /) -> bytes:
        raise AssertionError("the store read a body it already had")


class BreaksAfter(io.RawIOBase):
    """A body whose connection breaks after `good` bytes."""

    def __init__(self, good: bytes) -> None:
        self.rest = good

    def read(self, size: int = -1, /) -> bytes:
        if not self.rest:
            raise ConnectionResetError("the client went away")
        chunk, self.rest = self.rest[:size], self.rest[size:]
        return chunk


def part_files() -> list[Path]:
    return list(temp_dir().glob("*.part"))


def test_an_object_is_stored_under_its_hash_and_owned_by_its_uploader(ada: Person) -> None:
    stored, created = put(ada, DATA)
    assert created and stored.sha256 == digest(DATA) and stored.size == len(DATA)
    path = object_path(stored.sha256)
    assert path.parent.name == stored.sha256[:2]
    assert path.read_bytes() == DATA
    assert used_bytes(ada.user) == len(DATA)
    assert part_files() == []


def test_the_same_bytes_from_two_users_are_one_file_owned_by_both(ada: Person, bob: Person) -> None:
    put(ada, DATA)
    _, created = services.put_object(
        user=bob.user, sha256=digest(DATA), size=len(DATA), stream=Unreadable()
    )
    assert not created
    assert StoredObject.objects.count() == 1
    assert set(Ownership.objects.values_list("user__email", flat=True)) == {
        "ada@example.com",
        "bob@example.com",
    }
    assert used_bytes(ada.user) == used_bytes(bob.user) == len(DATA)


def test_storing_an_object_twice_owns_it_once(ada: Person) -> None:
    put(ada, DATA)
    put(ada, DATA)
    assert Ownership.objects.filter(user=ada.user).count() == 1
    assert used_bytes(ada.user) == len(DATA)


def test_a_claim_takes_an_object_the_store_has_and_refuses_one_it_has_not(
    ada: Person, bob: Person
) -> None:
    put(ada, DATA)
    services.claim_object(user=bob.user, sha256=digest(DATA))
    assert used_bytes(bob.user) == len(DATA)
    error = refusal(lambda: services.claim_object(user=bob.user, sha256=digest(b"other")))
    assert (error.status, error.code) == (404, "ENOTFOUND")


def test_each_user_quota_counts_what_they_own(settings: Any, ada: Person, bob: Person) -> None:
    settings.STORE_MAX_BYTES_PER_USER = len(DATA) + 10
    put(ada, DATA)
    error = refusal(lambda: put(ada, b"x" * 11))
    assert (error.status, error.code) == (413, "EQUOTA")
    assert "STORE_MAX_BYTES_PER_USER" in error.message
    put(bob, b"x" * 11)  # bob's quota is his own
    error = refusal(lambda: services.claim_object(user=bob.user, sha256=digest(DATA)))
    assert error.code == "EQUOTA"  # owning another's object counts too
    assert used_bytes(bob.user) == 11


def test_an_object_over_the_file_limit_is_refused_before_it_is_read(
    settings: Any, ada: Person
) -> None:
    settings.STORE_MAX_FILE_BYTES = 1024
    error = refusal(
        lambda: services.put_object(
            user=ada.user, sha256=digest(DATA), size=len(DATA), stream=Unreadable()
        )
    )
    assert (error.status, error.code) == (413, "ETOOLARGE")
    assert "1 KiB a file (STORE_MAX_FILE_BYTES)" in error.message
    assert not StoredObject.objects.exists()


def test_bytes_that_hash_otherwise_are_refused_and_nothing_is_stored(ada: Person) -> None:
    claimed = digest(b"something else")
    error = refusal(lambda: put(ada, DATA, sha256=claimed))
    assert (error.status, error.code) == (409, "EHASHMISMATCH")
    assert digest(DATA) in error.message
    assert object_of(claimed) is None and not object_path(claimed).exists()
    assert part_files() == [] and used_bytes(ada.user) == 0


def test_a_short_body_is_refused_and_nothing_is_stored(ada: Person) -> None:
    error = refusal(
        lambda: services.put_object(
            user=ada.user, sha256=digest(DATA), size=len(DATA), stream=io.BytesIO(DATA[:100])
        )
    )
    assert (error.status, error.code) == (400, "EINVALID")
    assert not StoredObject.objects.exists() and part_files() == []


def test_an_upload_that_breaks_midway_leaves_no_object_and_no_file(ada: Person) -> None:
    stream = BreaksAfter(DATA[:5000])
    with pytest.raises(ConnectionResetError):
        services.put_object(user=ada.user, sha256=digest(DATA), size=len(DATA), stream=stream)
    assert object_of(digest(DATA)) is None and not object_path(digest(DATA)).exists()
    assert part_files() == []


def test_a_crashed_upload_is_never_an_object_and_its_file_is_swept(ada: Person) -> None:
    # A process that died mid-upload left its temporary file: no object, until swept.
    leftover = temp_dir() / f"{digest(DATA)[:16]}-crashed.part"
    leftover.write_bytes(DATA[:5000])
    recent = temp_dir() / "in-progress.part"
    recent.write_bytes(b"still arriving")
    two_days_ago = time.time() - 2 * 86400
    os.utime(leftover, (two_days_ago, two_days_ago))
    assert object_of(digest(DATA)) is None
    assert services.remove_stale_temp_files() == 1
    assert not leftover.exists() and recent.exists()
    stored, created = put(ada, DATA)  # the same upload, again, works
    assert created and object_path(stored.sha256).read_bytes() == DATA


def test_an_object_whose_file_is_gone_is_not_served_and_can_be_stored_again(
    ada: Person,
) -> None:
    stored, _ = put(ada, DATA)
    object_path(stored.sha256).unlink()
    assert object_of(stored.sha256) is None
    _, created = put(ada, DATA)
    assert created and object_path(stored.sha256).read_bytes() == DATA
