"""Who may call the API: API keys (Bearer), identity keystores (Basic), and nobody else."""

from __future__ import annotations

import base64
import copy
import json
import time
import uuid
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from eth_account import Account

from dcp.keys.keystore import create_keystore
from portal.api.models import ApiKey
from portal.wallet.services import export_keystore

from .conftest import Caller, basic_credentials, error_of


@pytest.fixture(autouse=True)
def _own_cache(settings: Any) -> None:
    # Several tests here fail a Basic sign-in from the test client's 127.0.0.1: counted in a
    # cache of each test's own, those failures cannot throttle another test, even when the
    # suite runs on a Redis cache that other runs share (test_basic_auth_throttling.py counts).
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"test-auth-{uuid.uuid4()}",
        }
    }


def test_a_valid_api_key_is_accepted_and_its_use_is_noted(bearer, api_token):
    response = bearer.get("/api/v0/jobs")
    assert response.status_code == 200
    assert response.json() == []
    assert ApiKey.objects.get().last_used_at is not None


def test_a_request_without_credentials_is_401_with_the_error_shape(db):
    response = Client().get("/api/v0/jobs")
    assert response.status_code == 401
    assert error_of(response)["code"] == "EAUTH"
    assert "Bearer" in response["WWW-Authenticate"]


def test_a_signed_in_session_alone_is_not_accepted_by_the_api(first_dev, identity):
    # The session needs its CSRF token too: tests/api/test_session_auth.py.
    client = Client(enforce_csrf_checks=True)
    client.force_login(first_dev)
    response = client.get("/api/v0/accounts")
    assert response.status_code == 403
    assert error_of(response)["code"] == "ECSRF"


def test_api_requests_need_no_csrf_token(api_token):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/api/v0/job",
        data=json.dumps({"work": {"function": "def work(x):\n    return x\n"}}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_token}"},
    )
    assert response.status_code == 201


def test_a_malformed_api_key_is_refused(db):
    for token in ("nonsense", "dcp_123_abc", "dcp_" + "g" * 12 + "_" + "a" * 43, ""):
        response = Caller(Client(), f"Bearer {token}").get("/api/v0/jobs")
        assert response.status_code == 401, token
        assert error_of(response)["code"] == "EAUTH"


def test_a_wrong_secret_with_a_real_prefix_is_refused(api_token):
    prefix = api_token[: len("dcp_") + 12]
    forged = prefix + "_" + "A" * 43
    response = Caller(Client(), f"Bearer {forged}").get("/api/v0/jobs")
    assert response.status_code == 401
    assert error_of(response)["message"] == "unknown or revoked API key"


def test_a_revoked_api_key_is_refused(bearer):
    ApiKey.objects.update(revoked_at=timezone.now())
    response = bearer.get("/api/v0/jobs")
    assert response.status_code == 401
    assert error_of(response)["code"] == "EAUTH"


def test_an_api_key_of_a_deactivated_user_is_refused(bearer, first_dev):
    first_dev.is_active = False
    first_dev.save()
    assert bearer.get("/api/v0/jobs").status_code == 401


def test_the_database_holds_only_a_digest_of_the_key(api_token):
    stored = ApiKey.objects.values().get()
    assert api_token not in json.dumps(stored, default=str)
    assert stored["prefix"] in api_token


def test_basic_auth_with_the_identity_keystore_and_its_passphrase(basic):
    response = basic.get("/api/v0/accounts")
    assert response.status_code == 200
    assert [account["name"] for account in response.json()] == ["default"]


def test_basic_auth_with_a_passphrase_holding_colons(identity):
    keystore = export_keystore(key=identity, file_passphrase="a:b::c")
    caller = Caller(Client(), basic_credentials(keystore, "a:b::c"))
    assert caller.get("/api/v0/jobs").status_code == 200


def test_basic_auth_with_an_unencrypted_keystore_and_an_empty_passphrase(identity):
    keystore = export_keystore(key=identity, file_passphrase="")
    assert Caller(Client(), basic_credentials(keystore, "")).get("/api/v0/jobs").status_code == 200


def test_basic_auth_with_a_wrong_passphrase_is_refused(identity):
    keystore = export_keystore(key=identity, file_passphrase="right")
    response = Caller(Client(), basic_credentials(keystore, "wrong")).get("/api/v0/jobs")
    assert response.status_code == 401
    assert "wrong passphrase" in error_of(response)["message"]


def test_basic_auth_refuses_a_keystore_whose_kdf_is_above_the_cap_before_running_it(identity):
    keystore = copy.deepcopy(export_keystore(key=identity, file_passphrase="pw"))
    keystore["crypto"]["kdfparams"]["n"] = 2**22  # 4 GiB of scrypt memory if it ever ran
    started = time.monotonic()
    response = Caller(Client(), basic_credentials(keystore, "pw")).get("/api/v0/jobs")
    assert response.status_code == 401
    assert "exceed the allowed cap" in error_of(response)["message"]
    assert time.monotonic() - started < 5


def test_basic_auth_with_an_identity_nobody_registered_is_refused(db, first_dev):
    stranger_key = Account.create().key
    keystore = create_keystore(bytes(stranger_key), "pw", scrypt_n=2**10)
    response = Caller(Client(), basic_credentials(keystore, "pw")).get("/api/v0/jobs")
    assert response.status_code == 401
    assert error_of(response)["message"] == (
        "identity not registered: create one on the First Devs tab"
    )


def test_basic_auth_with_an_account_keystore_is_not_an_identity(account):
    keystore = export_keystore(key=account, file_passphrase="pw")
    response = Caller(Client(), basic_credentials(keystore, "pw")).get("/api/v0/jobs")
    assert response.status_code == 401


def test_garbled_basic_credentials_are_refused(db):
    for credentials in (
        "Basic !!!",
        "Basic " + base64.b64encode(b"no json here").decode(),
        "Basic " + base64.b64encode(b'{"version": 3}').decode(),
        "Basic " + base64.b64encode(b'["a list"]:pw').decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:pw").decode(),
        "Basic " + base64.b64encode(b'{"version": 3}:pw').decode(),
        "Basic " + "A" * 20_000,
    ):
        response = Caller(Client(), credentials).get("/api/v0/jobs")
        assert response.status_code == 401, credentials[:40]
        assert error_of(response)["code"] == "EAUTH"


def test_an_unknown_scheme_is_refused(db):
    assert Caller(Client(), "Digest abc").get("/api/v0/jobs").status_code == 401
