"""Sign-up, verification, password reset and the admin, as allauth and Django serve them."""

from __future__ import annotations

import re

from django.core import mail
from django.core.cache import cache

from portal.wallet.models import Key


def test_sign_up_sends_a_verification_link_that_creates_the_default_account(client, db):
    cache.clear()  # sign-ups are rate-limited per address: earlier tests' count must not apply
    response = client.post(
        "/accounts/signup/",
        {
            "email": "new@example.com",
            "password1": "a long pass 123",
            "password2": "a long pass 123",
        },
    )
    assert response.status_code == 302
    assert not Key.objects.exists()  # nothing until the address is verified
    link = re.search(r"http://testserver(/accounts/confirm-email/\S+/)", mail.outbox[-1].body)
    client.post(link.group(1))
    key = Key.objects.get(user__email="new@example.com")
    assert key.is_default and key.label == "default"


def test_an_unverified_user_cannot_sign_in(client, db, django_user_model):
    django_user_model.objects.create_user("late@example.com", "a long pass 123")
    response = client.post(
        "/accounts/login/", {"login": "late@example.com", "password": "a long pass 123"}
    )
    assert response.status_code == 302 and "confirm-email" in response["Location"]
    assert "_auth_user_id" not in client.session


def test_password_reset_by_email_lets_the_user_sign_in_with_the_new_password(client, user):
    client.post("/accounts/password/reset/", {"email": user.email})
    path = re.search(r"http://testserver(/accounts/password/reset/key/\S+/)", mail.outbox[-1].body)
    form_page = client.get(path.group(1), follow=True)
    client.post(
        form_page.request["PATH_INFO"],
        {"password1": "brand new pass 456", "password2": "brand new pass 456"},
    )
    client.logout()
    response = client.post(
        "/accounts/login/", {"login": user.email, "password": "brand new pass 456"}
    )
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_the_admin_shows_key_addresses_but_never_the_private_key(admin_client, user):
    key = Key.objects.get(user=user, is_default=True)
    html = admin_client.get(f"/admin/wallet/key/{key.pk}/change/").content.decode()
    assert key.address in html
    assert "sealed" not in html.lower()
    assert bytes(key.sealed_key).decode() not in html


def test_the_ledger_is_read_only_in_the_admin(admin_client, first_dev):
    assert admin_client.get("/admin/bank/txn/").status_code == 200
    assert admin_client.get("/admin/bank/txn/add/").status_code == 403
