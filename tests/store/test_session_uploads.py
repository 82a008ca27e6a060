"""PUT /store/<sha256> from the portal's own pages: the signed-in session stores as its user,
but only with the CSRF token the page was given; a session alone stores nothing."""

from __future__ import annotations

from typing import Any

from django.test import Client

from portal.store.selectors import object_of, used_bytes

from .conftest import Person, digest

DATA = b"a wheel's bytes, say " * 512
PATH = f"/store/{digest(DATA)}"
PORTAL = "http://testserver"


def signed_in(person: Person) -> Client:
    """A browser signed in as `person`, holding the csrftoken cookie a portal page set."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(person.user)
    assert client.get("/examples/uppercase/").status_code == 200
    return client


def token_of(client: Client) -> str:
    return str(client.cookies["csrftoken"].value)


def put(client: Client, data: bytes, **headers: str) -> Any:
    return client.generic(
        "PUT",
        PATH,
        data,
        "application/octet-stream",
        headers=headers,
        CONTENT_LENGTH=str(len(data)),
    )


def error_of(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_a_portal_page_stores_and_claims_with_the_session_and_its_csrf_token(
    ada: Person, bob: Person
) -> None:
    page = signed_in(ada)
    response = put(page, DATA, **{"X-CSRFToken": token_of(page), "Origin": PORTAL})
    assert response.status_code == 201
    assert response.json() == {"sha256": digest(DATA), "size": len(DATA)}
    assert used_bytes(ada.user) == len(DATA)

    # An empty PUT claims the object the store has: now bob's too.
    other = signed_in(bob)
    response = put(other, b"", **{"X-CSRFToken": token_of(other), "Origin": PORTAL})
    assert response.status_code == 200
    assert used_bytes(bob.user) == len(DATA)


def test_a_session_without_a_valid_csrf_token_stores_nothing(ada: Person) -> None:
    page = signed_in(ada)
    refusals = [
        {},  # the session cookie alone
        {"X-CSRFToken": "x" * 32},  # a token that is not the cookie's
        {"X-CSRFToken": token_of(page), "Origin": "https://evil.example"},  # another site
    ]
    for headers in refusals:
        response = put(page, DATA, **headers)
        assert error_of(response) == (403, "ECSRF"), headers
        assert "X-CSRFToken" in response.json()["error"]["message"]
    assert object_of(digest(DATA)) is None
    assert used_bytes(ada.user) == 0


def test_signed_upload_headers_count_before_the_session(ada: Person, bob: Person) -> None:
    page = signed_in(ada)
    response = put(page, DATA, **bob.signature(digest(DATA), len(DATA)))
    assert response.status_code == 201  # no CSRF token needed: bob's signature stores it
    assert (used_bytes(ada.user), used_bytes(bob.user)) == (0, len(DATA))


def test_without_a_session_or_credentials_the_upload_is_refused(ada: Person) -> None:
    response = put(Client(enforce_csrf_checks=True), DATA)
    assert error_of(response) == (401, "EAUTH")
    assert "X-CSRFToken" in response.json()["error"]["message"]
