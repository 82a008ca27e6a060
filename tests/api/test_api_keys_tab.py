"""The API keys section of the First Devs tab: create a key, see it once, revoke it."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from portal.api.models import ApiKey
from portal.api.services import create_api_key
from portal.wallet.models import Key, KeyKind

from .conftest import Caller

PAGE = "/portal/first-devs/"


@pytest.fixture
def browser_client(first_dev) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(first_dev)
    return client


def csrf_post(client: Client, url: str, data: dict[str, str]):
    """Load the First Devs tab as a browser would, then post a form with its CSRF token."""
    html = client.get(PAGE).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    return client.post(url, {**data, "csrfmiddlewaretoken": token})


def shown_key(html: str) -> str | None:
    match = re.search(r'data-testid="new-api-key">([^<]+)<', html)
    return match.group(1) if match else None


def test_without_an_identity_key_the_tab_says_to_make_one_first(browser_client):
    html = browser_client.get(PAGE).content.decode()
    assert "API keys" in html
    assert "Create an identity key above first" in html
    assert "Create API key" not in html


def test_creating_a_key_shows_it_once_and_stores_only_its_digest(browser_client, identity, account):
    response = csrf_post(
        browser_client,
        "/portal/first-devs/api-keys/",
        {"label": "ci", "identity": identity.address, "account": account.address},
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    token = shown_key(response.content.decode())
    assert token and token.startswith("dcp_")
    stored = ApiKey.objects.values().get()
    assert token not in json.dumps(stored, default=str)
    assert stored["identity_id"] == identity.pk and stored["account_id"] == account.pk
    again = browser_client.get(PAGE).content.decode()
    assert shown_key(again) is None and token not in again
    assert f"dcp_{stored['prefix']}_" in again and "Revoke" in again
    assert Caller(Client(), f"Bearer {token}").get("/api/v0/jobs").status_code == 200


def test_the_form_offers_only_the_users_own_keys(browser_client, identity, account, stranger):
    html = browser_client.get(PAGE).content.decode()
    assert identity.address in html and account.address in html
    for key in Key.objects.filter(user__email="eve@example.com"):
        assert key.address not in html


def test_a_key_cannot_bind_someone_elses_identity_or_account(
    browser_client, identity, account, stranger
):
    eve_identity = Key.objects.get(user__email="eve@example.com", kind=KeyKind.IDENTITY)
    eve_account = Key.objects.get(user__email="eve@example.com", kind=KeyKind.ACCOUNT)
    for data in (
        {"label": "x", "identity": eve_identity.address, "account": account.address},
        {"label": "x", "identity": identity.address, "account": eve_account.address},
        {"label": "x", "identity": account.address, "account": account.address},
    ):
        response = csrf_post(browser_client, "/portal/first-devs/api-keys/", data)
        assert response.status_code == 302
        page = browser_client.get(response["Location"]).content.decode()
        assert "Choose one of your" in page
    assert ApiKey.objects.filter(user__email="ada@example.com").count() == 0


def test_a_malformed_label_is_refused(browser_client, identity, account):
    data = {"label": "../x", "identity": identity.address, "account": account.address}
    response = csrf_post(browser_client, "/portal/first-devs/api-keys/", data)
    assert response.status_code == 302
    assert ApiKey.objects.count() == 0


def test_creating_needs_a_post_with_a_csrf_token(browser_client, identity, account):
    data = {"label": "ci", "identity": identity.address, "account": account.address}
    assert browser_client.get("/portal/first-devs/api-keys/").status_code == 405
    assert browser_client.post("/portal/first-devs/api-keys/", data).status_code == 403
    assert ApiKey.objects.count() == 0


def test_revoking_a_key_stops_it_at_once(browser_client, api_token):
    key = ApiKey.objects.get()
    response = csrf_post(browser_client, f"/portal/first-devs/api-keys/{key.prefix}/revoke/", {})
    assert response.status_code == 302
    page = browser_client.get(PAGE).content.decode()
    assert "is revoked" in page
    assert 'data-testid="api-key-row"' not in page
    assert Caller(Client(), f"Bearer {api_token}").get("/api/v0/jobs").status_code == 401


def test_nobody_can_revoke_someone_elses_key(browser_client, stranger):
    eve_key = ApiKey.objects.get(user__email="eve@example.com")
    csrf_post(browser_client, f"/portal/first-devs/api-keys/{eve_key.prefix}/revoke/", {})
    eve_key.refresh_from_db()
    assert eve_key.is_active
    assert stranger.get("/api/v0/jobs").status_code == 200


def test_a_passphrase_protected_account_is_marked_in_the_form(browser_client, identity, account):
    from portal.wallet.services import change_key_passphrase

    change_key_passphrase(key=account, current="", new="secret")
    html = browser_client.get(PAGE).content.decode()
    assert "the API cannot pay from it" in html


def test_the_service_returns_a_token_that_matches_the_stored_prefix(first_dev, identity, account):
    key, token = create_api_key(
        user=first_dev,
        label="x",
        identity_address=identity.address,
        account_address=account.address,
    )
    assert re.fullmatch(r"dcp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token)
    assert token.startswith(f"dcp_{key.prefix}_")
