"""The Workers page over HTTP: create a worker token (shown once, kept as a digest), list and
revoke it; another user's token is 404; and a worker token opens no door of the REST API."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest
from django.test import Client

from portal.scheduler.models import WorkerToken
from portal.scheduler.worker_credentials import create_worker_token, token_owner
from tests.web.test_pages import csrf_post, messages_of

PAGE = "/portal/workers/"


@pytest.fixture
def browser_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.fixture
def stranger(django_user_model) -> Any:
    return django_user_model.objects.create_user("eve@example.com", "pw-123456789")


def new_token(client: Client, name: str = "lab server") -> tuple[Any, str]:
    response = csrf_post(client, PAGE, "/portal/workers/new/", {"name": name})
    shown = re.search(r'data-testid="new-worker-token">([^<]+)<', response.content.decode())
    assert shown is not None
    return response, shown.group(1)


def test_the_workers_page_needs_a_signed_in_user(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_new_worker_token_is_shown_once_and_stored_as_a_digest(user, browser_client):
    response, text = new_token(browser_client)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert messages_of(response) == ["Worker token lab server created."]
    token = WorkerToken.objects.get(owner=user)
    assert token.digest == hashlib.sha256(text.encode()).hexdigest()
    assert text.startswith(f"dcpw_{token.prefix}_") and token.name == "lab server"
    assert token_owner(text) == token
    again = browser_client.get(PAGE).content.decode()
    assert text not in again and token.hint in again and "lab server" in again
    assert 'aria-current="page">Workers<' in again


def test_a_revoked_worker_token_is_listed_as_revoked_and_no_longer_works(user, browser_client):
    _, text = new_token(browser_client)
    token = WorkerToken.objects.get(owner=user)
    revoked = csrf_post(browser_client, PAGE, f"/portal/workers/{token.prefix}/revoke/", {})
    assert revoked.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert token_owner(text) is None
    page = browser_client.get(PAGE)
    assert messages_of(page) == ["Worker token lab server is revoked: its workers stop."]
    assert " · revoked " in page.content.decode()


def test_another_users_worker_token_is_404(stranger, browser_client):
    theirs, _ = create_worker_token(owner=stranger, name="theirs")
    answer = csrf_post(browser_client, PAGE, f"/portal/workers/{theirs.prefix}/revoke/", {})
    assert answer.status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert "theirs" not in browser_client.get(PAGE).content.decode()


def test_a_worker_token_opens_no_door_of_the_rest_api(user):
    _, text = create_worker_token(owner=user, name="lab server")
    basic = base64.b64encode(f"{text}:{text}".encode()).decode()
    for authorization in (f"Bearer {text}", f"Basic {basic}", text):
        answer = Client().get("/api/v0/jobs", HTTP_AUTHORIZATION=authorization)
        assert answer.status_code == 401, authorization
