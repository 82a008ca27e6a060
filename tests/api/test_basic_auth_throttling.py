"""Basic sign-ins are throttled: failures counted per client and per identity, and a keystore
opened with its passphrase is remembered for a minute instead of opened again."""

from __future__ import annotations

import random
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.test import Client
from eth_account import Account

from dcp.keys.keystore import create_keystore
from portal.api import auth
from portal.wallet.services import export_keystore

from .conftest import Caller, basic_credentials, error_of

CLIENT_LIMIT, _ = settings.BASIC_AUTH_FAILURE_LIMITS["client"]
IDENTITY_LIMIT, IDENTITY_SECONDS = settings.BASIC_AUTH_FAILURE_LIMITS["identity"]


def new_address() -> str:
    """A client address of a test's own: no other test's failures count against it."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def from_address(authorization: str, ip: str | None = None) -> Caller:
    return Caller(Client(REMOTE_ADDR=ip or new_address()), authorization)


def list_jobs(keystore: dict[str, Any], passphrase: str, ip: str | None = None) -> Any:
    """GET /api/v0/jobs signed in with a keystore, from `ip` (else a new address)."""
    return from_address(basic_credentials(keystore, passphrase), ip).get("/api/v0/jobs")


def stranger_keystore() -> dict[str, Any]:
    """A keystore that opens, of an identity nobody registered."""
    return create_keystore(bytes(Account.create().key), "pw", scrypt_n=2**10)


def test_past_the_limit_of_failures_from_one_address_the_keystore_is_not_opened(identity):
    keystore = export_keystore(key=identity, file_passphrase="right")
    ip = new_address()
    for _ in range(CLIENT_LIMIT):  # a different identity each time: only the address adds up
        response = list_jobs(stranger_keystore(), "wrong", ip)
        assert response.status_code == 401
        assert "wrong passphrase" in error_of(response)["message"]
    # The right passphrase is refused too: the keystore is no longer opened at all.
    response = list_jobs(keystore, "right", ip)
    assert response.status_code == 429
    error = error_of(response)
    assert error["code"] == "ETHROTTLED"
    assert "try again in" in error["message"]
    # Another client is not held back.
    assert list_jobs(keystore, "right").status_code == 200


def test_a_throttled_answer_says_when_to_retry(identity):
    keystore = export_keystore(key=identity, file_passphrase="right")
    caller = from_address(basic_credentials(keystore, "wrong"))
    for _ in range(IDENTITY_LIMIT):
        caller.get("/api/v0/jobs")
    response = caller.get("/api/v0/jobs")
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= IDENTITY_SECONDS
    assert f"try again in {response['Retry-After']} s" in error_of(response)["message"]


def test_failures_for_one_identity_lock_it_from_every_address(identity):
    keystore = export_keystore(key=identity, file_passphrase="right")
    for _ in range(IDENTITY_LIMIT):
        assert list_jobs(keystore, "wrong").status_code == 401
    assert list_jobs(keystore, "right").status_code == 429


def test_keystores_of_unregistered_identities_count_as_failures(identity):
    ip = new_address()
    for _ in range(CLIENT_LIMIT):
        response = list_jobs(stranger_keystore(), "pw", ip)
        assert error_of(response)["message"].startswith("identity not registered")
    registered = export_keystore(key=identity, file_passphrase="pw")
    assert list_jobs(registered, "pw", ip).status_code == 429


def test_a_keystore_opened_within_the_minute_is_not_opened_again(identity, monkeypatch):
    opened = []

    def counting_read_keystore(*args: Any, **kwargs: Any) -> bytes:
        opened.append(args)
        return read_keystore(*args, **kwargs)

    read_keystore = auth.read_keystore
    monkeypatch.setattr(auth, "read_keystore", counting_read_keystore)
    keystore = export_keystore(key=identity, file_passphrase="open sesame")
    for _ in range(3):
        assert list_jobs(keystore, "open sesame").status_code == 200
    assert len(opened) == 1


def test_a_remembered_keystore_still_needs_its_passphrase(identity):
    keystore = export_keystore(key=identity, file_passphrase="open sesame")
    assert list_jobs(keystore, "open sesame").status_code == 200
    response = list_jobs(keystore, "open sesame!")
    assert response.status_code == 401
    assert "wrong passphrase" in error_of(response)["message"]


def test_a_client_that_signed_in_within_the_minute_is_not_locked_out_by_its_address(identity):
    keystore = export_keystore(key=identity, file_passphrase="open sesame")
    ip = new_address()
    assert list_jobs(keystore, "open sesame", ip).status_code == 200
    for _ in range(CLIENT_LIMIT):
        list_jobs(stranger_keystore(), "guess", ip)
    assert list_jobs(keystore, "open sesame", ip).status_code == 200
    # A keystore not opened lately is refused from that address.
    fresh_export = export_keystore(key=identity, file_passphrase="open sesame")
    assert list_jobs(fresh_export, "open sesame", ip).status_code == 429


def test_the_cache_holds_neither_the_passphrase_nor_the_keystore(identity):
    passphrase = "a passphrase to look for"
    keystore = export_keystore(key=identity, file_passphrase=passphrase)
    assert list_jobs(keystore, passphrase).status_code == 200
    entries = raw_cache_entries()
    remembered = [value for key, value in entries if ":basic:verified:" in key]
    assert any(identity.address.encode() in value for value in remembered)
    for key, value in entries:
        for secret in (passphrase, keystore["crypto"]["ciphertext"], keystore["crypto"]["mac"]):
            assert secret not in key and secret.encode() not in value


def raw_cache_entries() -> list[tuple[str, bytes]]:
    """Every key in the cache and its stored (pickled) value, as the cache's owner sees them."""
    store = caches["default"]
    if isinstance(store, LocMemCache):
        return list(store._cache.items())
    assert isinstance(store, RedisCache), store
    client = store._cache.get_client()
    return [
        (key.decode(), client.get(key) or b"") for key in client.scan_iter(f"{store.key_prefix}:*")
    ]
