"""Bytes and dcp.Blob: the value encoding every end shares, local_exec's round trip, and the
client storing a job's blobs in the portal's store before it deploys the job."""

from __future__ import annotations

import hashlib
import json
import math
import os
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import dcp
from dcp.client.results import ResultHandle
from dcp.client.store import Store
from dcp.keys import signing_key
from dcp.protocol.storable import check_storable
from dcp.protocol.values import MAX_INLINE_BYTES, BlobRef, decode, encode, references
from dcp.runtime import slice as slice_runtime
from testkit.livesite import LiveSite

from .conftest import ACCOUNT_KEY

PASSWORD = "blob test password 42"
BIG = os.urandom(MAX_INLINE_BYTES + 1)
SHA = "ab" * 32
# Until the slice runtime decodes values, a work function receives their JSON form.
runtime_decodes = pytest.mark.xfail(
    not hasattr(slice_runtime, "encode_value"),
    reason="needs the slice runtime to decode and encode values (dcp/runtime/slice.py)",
    strict=True,
)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def through_json(value: Any) -> Any:
    return json.loads(json.dumps(encode(value), allow_nan=False))


# --- the encoding ---------------------------------------------------------------------------


def test_bytes_round_trip_through_the_encoding_and_json_text() -> None:
    value = {"raw": b"\x00\xff", "list": [bytearray(b"ab"), memoryview(b"cd")], "n": 1.5}
    assert encode(b"\x00\xff") == {"$bytes": "AP8="}
    assert decode(through_json(value)) == {"raw": b"\x00\xff", "list": [b"ab", b"cd"], "n": 1.5}


def test_a_dict_that_uses_a_tag_key_is_escaped_and_comes_back_the_same() -> None:
    tricky = {"$bytes": "not base64!", "inner": {"$blob": "x", "size": -1}, "$gt": 3}
    wire = through_json(tricky)
    assert set(wire) == {"$object"}
    assert decode(wire) == tricky
    assert references(wire) == []
    assert through_json({"$gt": 3}) == {"$gt": 3}  # other "$" keys are plain keys


def test_tuples_become_lists_and_keys_strings_as_json_writes_them() -> None:
    value = {2: (1, 2), 2.5: None, True: "t", None: [()]}
    assert encode(value) == json.loads(json.dumps(value))


@pytest.mark.parametrize(
    ("value", "error"),
    [({1, 2}, TypeError), (math.nan, ValueError), ({(1, 2): 3}, TypeError)],
)
def test_what_json_cannot_carry_is_refused_as_json_refuses_it(value: Any, error: type) -> None:
    with pytest.raises(error):
        encode(value)


def test_a_value_that_contains_itself_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        encode(loop)


def test_an_encoded_value_is_storable() -> None:
    check_storable(through_json({"data": b"\x00" * 100, "blob": BlobRef(SHA, 3), "$bytes": 1}))


@pytest.mark.parametrize(
    "tag",
    [
        {"$bytes": "AP8=", "more": 1},
        {"$bytes": "not base64!"},
        {"$bytes": 5},
        {"$blob": SHA},
        {"$blob": SHA.upper(), "size": 3},
        {"$blob": SHA, "size": -1},
        {"$blob": SHA, "size": True},
        {"$object": [1]},
    ],
)
def test_an_object_with_a_tag_key_but_not_its_shape_is_refused(tag: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        decode([tag])
    with pytest.raises(ValueError):
        references([tag])


def test_a_blob_reference_decodes_to_a_reference_or_what_resolve_makes_of_it() -> None:
    wire = through_json([BlobRef(SHA, 3)])
    assert wire == [{"$blob": SHA, "size": 3}]
    assert decode(wire) == [BlobRef(SHA, 3)]
    assert decode(wire, lambda ref: ref.size) == [3]


def test_references_are_listed_once_each_in_order() -> None:
    first, second = BlobRef(SHA, 3), BlobRef("cd" * 32, 4)
    wire = encode([second, {"a": first, "b": [second]}, first])
    assert references(wire) == [second, first]


# --- dcp.Blob -------------------------------------------------------------------------------


def test_a_blob_of_bytes_and_a_blob_of_a_file_name_the_same_object(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(BIG)
    in_memory, on_disk = dcp.Blob(BIG), dcp.Blob.from_path(path)
    assert (on_disk.sha256, on_disk.size) == (digest(BIG), len(BIG))
    assert in_memory == on_disk and on_disk.read() == BIG
    assert encode(on_disk) == {"$blob": digest(BIG), "size": len(BIG)}


def test_a_blob_takes_bytes_and_readable_files_only(tmp_path: Path) -> None:
    with pytest.raises(dcp.DCPError, match="takes bytes"):
        dcp.Blob("text")  # type: ignore[arg-type]
    with pytest.raises(dcp.DCPError, match="cannot read"):
        dcp.Blob.from_path(tmp_path / "missing.bin")


def test_bytes_over_the_inline_limit_travel_as_blobs_by_themselves() -> None:
    job = dcp.compute_for([b"small", BIG], "def work(data):\n    return len(data)\n")
    small, big = job.input.wire()["values"]
    assert small == {"$bytes": "c21hbGw="}
    assert big == {"$blob": digest(BIG), "size": len(BIG)}
    [blob] = references(job.input.wire())
    assert isinstance(blob, dcp.Blob) and blob.read() == BIG


def test_a_deploy_carries_references_to_its_blobs(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"weights" * 10)
    weights = dcp.Blob.from_path(path)
    job = dcp.compute_for([1], "def work(x, w):\n    return x\n", args=[{"weights": weights}])
    frame = job.deploy_frame(Decimal("0.001"), ACCOUNT_KEY)
    assert frame["args"] == [{"weights": {"$blob": weights.sha256, "size": weights.size}}]
    assert references(frame["args"]) == [weights]


# --- local_exec -----------------------------------------------------------------------------

REVERSE = "def work(data, suffix):\n    return data[::-1] + suffix\n"


@runtime_decodes
def test_local_exec_gives_the_work_function_bytes_and_takes_bytes_back() -> None:
    inputs = [b"ab", BIG, dcp.Blob(b"blob")]
    job = dcp.compute_for(inputs, REVERSE, args=[b"!"])
    seen: list[Any] = []
    job.on("result", lambda data: seen.append(data["value"]))
    results = job.local_exec()
    assert list(results) == [b"ba!", BIG[::-1] + b"!", b"bolb!"]
    assert sorted(seen, key=len) == sorted(results, key=len)


@runtime_decodes
def test_local_exec_returns_a_dict_with_a_tag_key_as_it_was() -> None:
    job = dcp.compute_for([1], 'def work(x):\n    return [{"$bytes": "AP8="}, x]\n')
    assert list(job.local_exec()) == [[{"$bytes": "AP8="}, 1]]


# --- a live portal --------------------------------------------------------------------------


def head(site: LiveSite, sha256: str) -> int:
    request = urllib.request.Request(f"{site.url}/store/{sha256}", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def owners(site: LiveSite, sha256: str) -> list[tuple[object, ...]]:
    return site.query("SELECT COUNT(*) FROM store_ownership WHERE stored_object_id = ?", (sha256,))


def access_log(site: LiveSite) -> str:
    """The requests the live portal served: daphne writes its access log to its own log."""
    return site.requests_seen() or site.log_path.read_text()


@pytest.fixture
def live(portal_site: LiveSite, tmp_path: Path) -> LiveSite:
    """The live portal, this test's DCP home holding a paying First Dev's keystores."""
    portal_site.seed(tmp_path / "home", PASSWORD)
    dcp.init(portal_site.url)
    return portal_site


def test_the_client_stores_the_blobs_of_a_job_before_it_deploys(
    live: LiveSite, tmp_path: Path
) -> None:
    path = tmp_path / "table.bin"
    path.write_bytes(os.urandom(1000))
    table = dcp.Blob.from_path(path)
    job = dcp.compute_for([BIG, b"small"], "def work(x, t):\n    return len(x)\n", args=[table])
    stored_when_accepted: list[int] = []

    def accepted(data: Any) -> None:
        stored_when_accepted.extend(head(live, sha) for sha in (digest(BIG), table.sha256))
        job.cancel("the test saw what it needed")

    job.on("accepted", accepted)
    with pytest.raises(dcp.DCPError) as raised:
        job.exec("0.001")
    assert raised.value.code == "ECANCELLED", str(raised.value)
    assert stored_when_accepted == [200, 200]
    with urllib.request.urlopen(f"{live.url}/store/{digest(BIG)}", timeout=10) as response:
        assert response.read() == BIG


def test_a_blob_the_store_has_is_claimed_without_sending_it(live: LiveSite, tmp_path: Path) -> None:
    data = os.urandom(5000)
    first = signing_key(tmp_path / "home" / ".dcp" / "id.keystore", "identity")
    Store(live.url, first).upload([dcp.Blob(data)])
    folder = tmp_path / "other"
    live.manage(
        "create_first_dev", "other@example.com", "--password", PASSWORD, "--keystores", str(folder)
    )
    other = signing_key(folder / "id.keystore", "identity")
    # A bare reference: this process has no bytes to send, so the store's copy must do.
    Store(live.url, other).upload([BlobRef(digest(data), len(data))])
    assert owners(live, digest(data)) == [(2,)]


def test_a_file_that_changed_after_it_was_hashed_is_refused(live: LiveSite, tmp_path: Path) -> None:
    path = tmp_path / "changing.bin"
    path.write_bytes(os.urandom(2000))
    blob = dcp.Blob.from_path(path)
    path.write_bytes(os.urandom(2000))
    identity = signing_key(tmp_path / "home" / ".dcp" / "id.keystore", "identity")
    with pytest.raises(dcp.DCPError) as raised:
        Store(live.url, identity).upload([blob])
    assert raised.value.code == "EHASHMISMATCH"
    assert head(live, blob.sha256) == 404


def test_a_blob_result_is_fetched_from_the_store_the_first_time_it_is_read(
    live: LiveSite, tmp_path: Path
) -> None:
    data = os.urandom(3000)
    identity = signing_key(tmp_path / "home" / ".dcp" / "id.keystore", "identity")
    Store(live.url, identity).upload([dcp.Blob(data)])
    reference = {"$blob": digest(data), "size": len(data)}
    handle = ResultHandle([(2, 5), (1, {"out": reference})])
    fetched = f"GET /store/{digest(data)}"

    assert "BlobRef" in repr(handle)  # looking fetches nothing
    assert access_log(live).count(fetched) == 0
    assert handle[0] == {"out": data}
    assert handle.values() == [{"out": data}, 5]
    assert access_log(live).count(fetched) == 1  # once, then kept

    wrong = ResultHandle([(1, {"$blob": digest(data), "size": len(data) + 1})])
    with pytest.raises(dcp.DCPError) as raised:
        wrong.values()
    assert raised.value.code == "EHASHMISMATCH"
