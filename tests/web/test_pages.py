"""The portal pages over HTTP, with CSRF enforced as a browser would meet it."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from eth_account import Account

from dcp.protocol.credits import to_units
from portal.bank.selectors import balance_of
from portal.wallet.models import Key, KeyKind


@pytest.fixture
def browser_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def csrf_post(client: Client, page: str, url: str, data: dict[str, str]):
    """Load `page` as a browser would, then post the form with the token it carries."""
    html = client.get(page).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    return client.post(url, {**data, "csrfmiddlewaretoken": token})


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]] if response.context else []


def test_tabs_need_a_signed_in_user(client):
    for url in ("/portal/accounts/", "/portal/first-devs/", "/portal/worker/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_accounts_tab_shows_each_account_with_its_balance(first_dev, browser_client):
    html = browser_client.get("/portal/accounts/").content.decode()
    address = Key.objects.get(user=first_dev, is_default=True).address
    assert address in html
    assert re.search(r'data-testid="balance">10<', html)
    assert "Refresh balance" in html and "Download" in html


def test_balance_endpoint_answers_for_own_accounts_only(first_dev, browser_client, db):
    own = Key.objects.get(user=first_dev, is_default=True).address
    assert browser_client.get(f"/portal/keys/{own}/balance/").json()["balance"] == "10"
    stranger = Account.create().address
    assert browser_client.get(f"/portal/keys/{stranger}/balance/").status_code == 404


def test_a_forged_post_without_csrf_token_changes_nothing(first_dev, browser_client):
    before = Key.objects.count()
    response = browser_client.post("/portal/accounts/new/", {"label": "forged"})
    assert response.status_code == 403
    assert Key.objects.count() == before


def test_joining_first_devs_from_the_page_once(user, browser_client):
    csrf_post(browser_client, "/portal/first-devs/", "/portal/first-devs/join/", {})
    response = csrf_post(browser_client, "/portal/first-devs/", "/portal/first-devs/join/", {})
    address = Key.objects.get(user=user, is_default=True).address
    assert balance_of(address) == to_units(10)
    page = browser_client.get(response["Location"])
    assert "already a member" in " ".join(messages_of(page))


def test_new_account_keystore_with_a_malformed_label_is_refused(user, browser_client):
    before = Key.objects.count()
    response = csrf_post(
        browser_client, "/portal/accounts/", "/portal/accounts/new/", {"label": "../../x"}
    )
    page = browser_client.get(response["Location"])
    assert "A label is 1 to 40 letters" in " ".join(messages_of(page))
    assert Key.objects.count() == before


def test_keystore_download_is_a_v3_file_named_for_the_key(user, browser_client):
    key = Key.objects.get(user=user, is_default=True)
    response = csrf_post(
        browser_client,
        "/portal/accounts/",
        f"/portal/keys/{key.address}/keystore/",
        {"file_passphrase": "pw"},
    )
    assert response["Content-Disposition"] == 'attachment; filename="default.keystore"'
    keystore = json.loads(response.content)
    assert keystore["version"] == 3 and keystore["crypto"]["kdf"] == "scrypt"
    assert Account.from_key(Account.decrypt(keystore, "pw")).address == key.address


def test_download_with_a_wrong_key_passphrase_gives_a_message_and_no_file(user, browser_client):
    key = Key.objects.get(user=user, is_default=True)
    csrf_post(
        browser_client,
        "/portal/accounts/",
        f"/portal/keys/{key.address}/passphrase/",
        {"current": "", "new": "guard", "confirm": "guard"},
    )
    response = csrf_post(
        browser_client,
        "/portal/accounts/",
        f"/portal/keys/{key.address}/keystore/",
        {"file_passphrase": "", "key_passphrase": "wrong"},
    )
    assert response.status_code == 302
    page = browser_client.get(response["Location"])
    assert "wrong passphrase" in " ".join(messages_of(page))


def test_mismatched_new_passphrases_change_nothing(user, browser_client):
    key = Key.objects.get(user=user, is_default=True)
    sealed = bytes(key.sealed_key)
    response = csrf_post(
        browser_client,
        "/portal/accounts/",
        f"/portal/keys/{key.address}/passphrase/",
        {"current": "", "new": "one", "confirm": "two"},
    )
    page = browser_client.get(response["Location"])
    assert "differ" in " ".join(messages_of(page))
    key.refresh_from_db()
    assert bytes(key.sealed_key) == sealed and not key.has_passphrase


def test_cannot_download_someone_elses_key(user, browser_client, django_user_model):
    from portal.wallet.services import create_key

    other = django_user_model.objects.create_user("eve@example.com", "pw-123456789")
    theirs = create_key(user=other, kind=KeyKind.IDENTITY, label="eve")
    response = csrf_post(
        browser_client, "/portal/accounts/", f"/portal/keys/{theirs.address}/keystore/", {}
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("amount", "target", "why"),
    [
        ("11", None, "too few credits"),
        ("-1", None, "positive"),
        ("0.0000000001", None, "nine decimal"),
        ("lots", None, "not a number"),
        ("1", "0x1234", "not an account address"),
    ],
)
def test_bad_transfers_are_refused_with_a_message(first_dev, browser_client, amount, target, why):
    source = Key.objects.get(user=first_dev, is_default=True).address
    response = csrf_post(
        browser_client,
        "/portal/accounts/",
        "/portal/accounts/transfer/",
        {
            "source": source,
            "target": target or Account.create().address,
            "amount": amount,
            "request_id": "3f1c6b8e-8a3c-4a55-9f6a-1b2c3d4e5f60",
        },
    )
    page = browser_client.get(response["Location"])
    assert why in " ".join(messages_of(page))
    assert balance_of(source) == to_units(10)


def test_transfer_between_own_accounts(first_dev, browser_client):
    from portal.wallet.services import create_key

    source = Key.objects.get(user=first_dev, is_default=True).address
    savings = create_key(user=first_dev, kind=KeyKind.ACCOUNT, label="savings").address
    csrf_post(
        browser_client,
        "/portal/accounts/",
        "/portal/accounts/transfer/",
        {
            "source": source,
            "target": savings,
            "amount": "2.5",
            "request_id": "3f1c6b8e-8a3c-4a55-9f6a-1b2c3d4e5f61",
        },
    )
    assert balance_of(source) == to_units("7.5")
    assert balance_of(savings) == to_units("2.5")


def test_new_identity_key_is_listed_with_a_download_button(user, browser_client):
    csrf_post(
        browser_client, "/portal/first-devs/", "/portal/first-devs/identity/", {"label": "laptop"}
    )
    html = browser_client.get("/portal/first-devs/").content.decode()
    key = Key.objects.get(user=user, kind=KeyKind.IDENTITY)
    assert "Your Keys To DCP" in html and key.address in html and "laptop" in html


def test_worker_tab_offers_each_account_to_pay_into_the_default_first(first_dev, browser_client):
    from portal.wallet.services import create_key

    default = Key.objects.get(user=first_dev, is_default=True)
    savings = create_key(user=first_dev, kind=KeyKind.ACCOUNT, label="savings")
    # An account older than the default one is still listed after it.
    Key.objects.filter(pk=savings.pk).update(created_at=default.created_at - timedelta(days=1))
    html = browser_client.get("/portal/worker/").content.decode()
    options = re.findall(
        r'<option value="(0x[0-9a-fA-F]{40})" data-label="([^"]+)"\s+data-balance="([^"]+)"'
        r'\s+data-balance-url="([^"]+)">([^<]+)</option>',
        html,
    )
    assert [(address, label, balance) for address, label, balance, _, _ in options] == [
        (default.address, default.label, "10"),
        (savings.address, "savings", "0"),
    ]
    assert options[0][3] == f"/portal/keys/{default.address}/balance/"
    assert options[0][4].startswith(f"{default.label} (default)")
    assert '<option value="other">Another address…</option>' in html
    assert re.search(r'data-testid="paid-into-balance">10<', html)
