"""The admin's login page stops checking passwords after repeated failures, as allauth's does."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

PASSWORD = "a long admin pass 123"
TOO_MANY = f"Too many failed login attempts: try again in {settings.LOGIN_FAILURE_MINUTES} minutes."


@pytest.fixture(autouse=True)
def _fast_password_hashes(settings: Any) -> None:
    # Every attempt hashes a password (a dummy one for unknown emails): keep the tests quick.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_email(django_user_model: Any) -> str:
    """A staff account with an address of its own, so no other test's failures count for it."""
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    django_user_model.objects.create_superuser(email, PASSWORD)
    return email


def a_client() -> Client:
    """A browser at an address of its own: failures are also counted per client IP."""
    return Client(REMOTE_ADDR=f"10.{random.randrange(256)}.{random.randrange(256)}.7")


def admin_login(client: Client, email: str, password: str) -> Any:
    return client.post("/admin/login/?next=/admin/", {"username": email, "password": password})


def test_after_five_wrong_passwords_even_the_right_one_is_refused(admin_email):
    client = a_client()
    for _ in range(settings.LOGIN_FAILURES):
        response = admin_login(client, admin_email, "wrong password")
        assert response.status_code == 200
        assert "Please enter the correct email address and password" in response.text
    response = admin_login(client, admin_email, PASSWORD)
    assert response.status_code == 200
    assert TOO_MANY in response.text
    assert "_auth_user_id" not in client.session


def test_the_email_stays_locked_from_another_address(admin_email):
    for _ in range(settings.LOGIN_FAILURES):
        admin_login(a_client(), admin_email, "wrong password")
    response = admin_login(a_client(), admin_email, PASSWORD)
    assert TOO_MANY in response.text


def test_one_address_trying_many_emails_is_stopped(django_user_model, admin_email):
    client = a_client()
    for n in range(10):
        admin_login(client, f"nobody-{n}-{uuid.uuid4().hex[:6]}@example.com", "guess")
    response = admin_login(client, admin_email, PASSWORD)
    assert TOO_MANY in response.text


def test_failures_on_the_portal_login_page_count_for_the_admin_too(admin_email):
    client = a_client()
    for _ in range(settings.LOGIN_FAILURES):
        client.post("/accounts/login/", {"login": admin_email, "password": "wrong password"})
    assert TOO_MANY in admin_login(client, admin_email, PASSWORD).text


def test_the_right_password_within_the_limit_signs_in(admin_email):
    client = a_client()
    for _ in range(settings.LOGIN_FAILURES - 1):
        admin_login(client, admin_email, "wrong password")
    response = admin_login(client, admin_email, PASSWORD)
    assert response.status_code == 302
    assert client.session["_auth_user_id"]
