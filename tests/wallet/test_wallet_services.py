"""Keys at rest, keystore export, passphrases and transfers through the wallet services."""

from __future__ import annotations

import pytest
from eth_account import Account

from dcp.keys.keystore import read_keystore
from dcp.protocol.credits import to_units
from portal.bank.selectors import balance_of
from portal.wallet import services as wallet
from portal.wallet.models import Key, KeyKind
from portal.wallet.sealing import SealError, WrongKeyPassphrase, seal, unseal


def test_verified_user_has_one_default_account_key(user):
    keys = Key.objects.filter(user=user, kind=KeyKind.ACCOUNT)
    assert [(key.label, key.is_default) for key in keys] == [("default", True)]
    assert wallet.ensure_default_account(user=user) == keys.get()


def test_private_keys_are_stored_sealed_not_in_the_clear(user):
    key = Key.objects.get(user=user, is_default=True)
    raw = wallet.private_key_of(key=key)
    assert Account.from_key(raw).address == key.address
    assert raw not in bytes(key.sealed_key)
    assert raw.hex() not in bytes(key.sealed_key).decode()


def test_a_sealed_key_cannot_be_opened_under_another_server_secret(settings):
    blob = seal(b"\x01" * 32)
    settings.SECRET_KEY = "another secret"
    with pytest.raises(SealError, match="another server secret"):
        unseal(blob)


def test_exported_keystore_decrypts_to_the_address_shown(user):
    key = Key.objects.get(user=user, is_default=True)
    keystore = wallet.export_keystore(key=key, file_passphrase="file pass")
    assert keystore["label"] == "default"
    assert Account.from_key(Account.decrypt(keystore, "file pass")).address == key.address
    assert Account.from_key(read_keystore(keystore, "file pass")).address == key.address


def test_a_key_passphrase_is_then_required_by_every_use(user):
    key = Key.objects.get(user=user, is_default=True)
    wallet.change_key_passphrase(key=key, current="", new="s3cret")
    key.refresh_from_db()
    assert key.has_passphrase
    with pytest.raises(WrongKeyPassphrase):
        wallet.export_keystore(key=key, file_passphrase="")
    with pytest.raises(WrongKeyPassphrase):
        wallet.change_key_passphrase(key=key, current="wrong", new="other")
    keystore = wallet.export_keystore(key=key, file_passphrase="", key_passphrase="s3cret")
    assert Account.from_key(Account.decrypt(keystore, "")).address == key.address
    wallet.change_key_passphrase(key=key, current="s3cret", new="")
    key.refresh_from_db()
    assert not key.has_passphrase


@pytest.mark.parametrize("label", ["", " ", "a" * 41, "../etc", "has space", "-lead", "é"])
def test_malformed_labels_are_refused_and_create_nothing(user, label):
    before = Key.objects.count()
    with pytest.raises(wallet.WalletError, match="label"):
        wallet.create_key(user=user, kind=KeyKind.ACCOUNT, label=label)
    assert Key.objects.count() == before


def test_a_label_is_unique_per_user_and_kind(user):
    wallet.create_key(user=user, kind=KeyKind.IDENTITY, label="laptop")
    with pytest.raises(wallet.WalletError, match="already"):
        wallet.create_key(user=user, kind=KeyKind.IDENTITY, label="laptop")
    wallet.create_key(user=user, kind=KeyKind.ACCOUNT, label="laptop")


def test_transfer_above_the_balance_is_refused_and_moves_nothing(first_dev):
    source = Key.objects.get(user=first_dev, is_default=True)
    savings = wallet.create_key(user=first_dev, kind=KeyKind.ACCOUNT, label="savings")
    from portal.bank.services import InsufficientFunds

    with pytest.raises(InsufficientFunds):
        wallet.transfer_credits(
            source=source,
            target_address=savings.address,
            amount=to_units("10.5"),
            key_passphrase="",
            request_id="r1",
        )
    assert balance_of(source.address) == to_units("10")
    assert balance_of(savings.address) == 0


def test_a_double_submitted_transfer_moves_credits_once(first_dev):
    source = Key.objects.get(user=first_dev, is_default=True)
    target = Account.create().address
    for _ in range(2):
        wallet.transfer_credits(
            source=source,
            target_address=target.lower(),
            amount=to_units("0.25"),
            key_passphrase="",
            request_id="same-form",
        )
    assert balance_of(source.address) == to_units("9.75")
    assert balance_of(target) == to_units("0.25")


@pytest.mark.parametrize(
    "address",
    ["", "0x123", "0x" + "g" * 40, "not an address", "0x52908400098527886e0F7030069857D2E4169EE7"],
)
def test_malformed_or_mistyped_addresses_are_refused(address):
    with pytest.raises(wallet.WalletError):
        wallet.normalise_address(address)


def test_addresses_are_accepted_with_or_without_0x_in_any_case():
    checksummed = "0x52908400098527886E0F7030069857D2E4169EE7"
    assert wallet.normalise_address(checksummed.lower()) == checksummed
    assert wallet.normalise_address(checksummed[2:].upper()) == checksummed
