"""PUT, GET and HEAD of /store/<sha256>: both ways to sign an upload, and what readers get."""

from __future__ import annotations

import time
from typing import Any

from django.test import Client

from dcp.protocol.signed import MAX_UPLOAD_SIGNATURE_SECONDS
from portal.store.selectors import object_of, used_bytes

from .conftest import Person, digest

DATA = b"\x00\x01 binary data \xff" * 4096
PATH = f"/store/{digest(DATA)}"


def error_of(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_a_signed_upload_stores_the_object_once(ada: Person) -> None:
    response = ada.put(DATA)
    assert response.status_code == 201
    assert response.json() == {"sha256": digest(DATA), "size": len(DATA)}
    assert ada.put(DATA).status_code == 200
    assert used_bytes(ada.user) == len(DATA)


def test_an_api_key_uploads_without_a_csrf_token(ada: Person) -> None:
    headers = {"Authorization": f"Bearer {ada.api_key()}"}
    response = ada.put(DATA, **headers)
    assert response.status_code == 201
    assert used_bytes(ada.user) == len(DATA)


def test_a_revoked_or_unknown_api_key_is_refused(ada: Person) -> None:
    response = ada.put(DATA, Authorization="Bearer dcp_000000000000_" + "x" * 43)
    assert error_of(response) == (401, "EAUTH")
    assert object_of(digest(DATA)) is None


def test_an_upload_without_credentials_is_refused(ada: Person) -> None:
    response = ada.client.generic("PUT", PATH, DATA, "application/octet-stream")
    assert error_of(response) == (401, "EAUTH")
    assert "X-DCP-Signature" in response.json()["error"]["message"]


def test_an_expired_signature_is_refused(ada: Person) -> None:
    response = ada.put(DATA, **ada.signature(digest(DATA), len(DATA), time.time() - 1))
    assert error_of(response) == (401, "EAUTH")
    assert "expired" in response.json()["error"]["message"]


def test_a_signature_expiring_too_far_ahead_is_refused(ada: Person) -> None:
    later = time.time() + MAX_UPLOAD_SIGNATURE_SECONDS + 60
    response = ada.put(DATA, **ada.signature(digest(DATA), len(DATA), later))
    assert error_of(response) == (401, "EAUTH")


def test_a_signature_by_another_users_key_is_refused(ada: Person, bob: Person) -> None:
    headers = {**bob.signature(digest(DATA), len(DATA)), "X-DCP-Identity": ada.identity.address}
    assert error_of(ada.put(DATA, **headers)) == (401, "EAUTH")
    response = ada.put(DATA, **bob.signature(digest(DATA), len(DATA)))
    assert response.status_code == 201  # bob signed it: bob's object, not ada's
    assert (used_bytes(ada.user), used_bytes(bob.user)) == (0, len(DATA))


def test_a_signature_of_other_bytes_is_refused(ada: Person) -> None:
    response = ada.put(DATA, **ada.signature(digest(DATA), len(DATA) + 1))
    assert error_of(response) == (401, "EAUTH")


def test_an_identity_nobody_registered_is_refused(ada: Person) -> None:
    ada.identity.delete()
    assert error_of(ada.put(DATA)) == (401, "EAUTH")


def test_a_user_outside_first_devs_may_not_store(ada: Person) -> None:
    type(ada.user).objects.filter(pk=ada.user.pk).update(first_dev_since=None)
    assert error_of(ada.put(DATA)) == (403, "ENOTFIRSTDEV")


def test_bytes_that_hash_otherwise_are_refused(ada: Person) -> None:
    other = digest(b"other bytes")
    response = ada.put(DATA, sha256=other, **ada.signature(other, len(DATA)))
    assert error_of(response) == (409, "EHASHMISMATCH")
    assert Client().get(f"/store/{other}").status_code == 404


def test_uploads_over_the_limits_are_refused(settings: Any, ada: Person) -> None:
    settings.STORE_MAX_FILE_BYTES = len(DATA) - 1
    assert error_of(ada.put(DATA)) == (413, "ETOOLARGE")
    settings.STORE_MAX_FILE_BYTES = len(DATA)
    settings.STORE_MAX_BYTES_PER_USER = len(DATA) - 1
    response = ada.put(DATA)
    assert error_of(response) == (413, "EQUOTA")
    assert "STORE_MAX_BYTES_PER_USER" in response.json()["error"]["message"]


def test_an_empty_body_claims_an_object_the_store_has(ada: Person, bob: Person) -> None:
    ada.put(DATA)
    response = bob.client.generic(
        "PUT", PATH, b"", headers=bob.signature(digest(DATA), len(DATA)), CONTENT_LENGTH="0"
    )
    assert response.status_code == 200
    assert used_bytes(bob.user) == len(DATA)
    unknown = digest(b"never stored")
    response = bob.client.generic(
        "PUT", f"/store/{unknown}", b"", headers=bob.signature(unknown, 0), CONTENT_LENGTH="0"
    )
    assert error_of(response) == (404, "ENOTFOUND")


def test_an_upload_needs_a_content_length(ada: Person) -> None:
    response = ada.client.generic("PUT", PATH, b"", headers=ada.signature(digest(DATA), 0))
    assert error_of(response) == (400, "EINVALID")


def test_anyone_reads_an_object_with_immutable_cross_origin_headers(ada: Person) -> None:
    ada.put(DATA)
    response = Client().get(PATH)
    assert response.status_code == 200
    assert response.getvalue() == DATA
    assert response["Content-Length"] == str(len(DATA))
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response["ETag"] == f'"{digest(DATA)}"'
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Cross-Origin-Resource-Policy"] == "cross-origin"


def test_a_reader_with_the_object_gets_304(ada: Person) -> None:
    ada.put(DATA)
    response = Client().get(PATH, headers={"If-None-Match": f'"{digest(DATA)}"'})
    assert response.status_code == 304


def test_head_says_the_size_without_the_bytes(ada: Person) -> None:
    assert Client().head(PATH).status_code == 404
    ada.put(DATA)
    response = Client().head(PATH)
    assert response.status_code == 200
    assert response["Content-Length"] == str(len(DATA)) and response.content == b""
    assert response["ETag"] == f'"{digest(DATA)}"'


def test_an_unknown_object_is_404_and_a_bad_name_400(db: None) -> None:
    response = Client().get(f"/store/{digest(b'nothing')}")
    assert error_of(response) == (404, "ENOTFOUND")
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Cache-Control" not in response or "immutable" not in response["Cache-Control"]
    assert error_of(Client().get("/store/ABC")) == (400, "EINVALID")


def test_other_methods_are_refused_with_allow(db: None) -> None:
    response = Client().delete(PATH)
    assert error_of(response) == (405, "EMETHOD")
    assert response["Allow"] == "GET, HEAD, PUT, OPTIONS"
