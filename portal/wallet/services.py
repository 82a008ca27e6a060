"""Every write to the wallet: creating keys, exporting keystores, changing passphrases."""

from __future__ import annotations

import re
import secrets
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from eth_account import Account
from eth_utils import is_checksum_address, to_checksum_address

from dcp.keys.keystore import create_keystore
from portal.bank import services as bank
from portal.users.models import User

from .models import Key, KeyKind
from .sealing import seal, unseal

LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
DEFAULT_ACCOUNT_LABEL = "default"


class WalletError(ValueError):
    """Bad input to a wallet operation; the message is safe to show to the user."""


def validate_label(label: str) -> str:
    label = label.strip()
    if not LABEL_PATTERN.fullmatch(label):
        raise WalletError(
            "A label is 1 to 40 letters, digits, '-' or '_', starting with a letter or digit."
        )
    return label


@transaction.atomic
def create_key(*, user: User, kind: KeyKind, label: str, is_default: bool = False) -> Key:
    """A new random secp256k1 key for `user`; account keys also get their ledger account."""
    label = validate_label(label)
    if Key.objects.filter(user=user, kind=kind, label=label).exists():
        raise WalletError(f"You already have a {KeyKind(kind).label} labelled {label!r}.")
    private_key = secrets.token_bytes(32)
    account = Account.from_key(private_key)
    try:
        with transaction.atomic():
            key = Key.objects.create(
                user=user,
                kind=kind,
                label=label,
                address=account.address,
                sealed_key=seal(private_key),
                is_default=is_default,
            )
    except IntegrityError:
        raise WalletError(f"You already have a {KeyKind(kind).label} labelled {label!r}.") from None
    if kind == KeyKind.ACCOUNT:
        bank.account_for_address(key.address)
    return key


@transaction.atomic
def ensure_default_account(*, user: User) -> Key:
    """The user's default account key, created the first time (on email verification)."""
    User.objects.select_for_update().filter(pk=user.pk).first()
    existing = Key.objects.filter(user=user, kind=KeyKind.ACCOUNT, is_default=True).first()
    if existing is not None:
        return existing
    return create_key(user=user, kind=KeyKind.ACCOUNT, label=DEFAULT_ACCOUNT_LABEL, is_default=True)


def private_key_of(*, key: Key, key_passphrase: str = "") -> bytes:
    """The raw private key; raises WrongKeyPassphrase when the key's passphrase is not given."""
    return unseal(key.sealed_key, passphrase=key_passphrase if key.has_passphrase else "")


def export_keystore(*, key: Key, file_passphrase: str, key_passphrase: str = "") -> dict[str, Any]:
    """A V3 keystore of the key, encrypted with `file_passphrase` (empty means none)."""
    private_key = private_key_of(key=key, key_passphrase=key_passphrase)
    return create_keystore(
        private_key, file_passphrase, label=key.label, scrypt_n=settings.KEYSTORE_SCRYPT_N
    )


def change_key_passphrase(*, key: Key, current: str, new: str) -> None:
    """Set, change or (with an empty `new`) remove the extra passphrase protecting a stored key."""
    private_key = private_key_of(key=key, key_passphrase=current)
    key.sealed_key = seal(private_key, passphrase=new)
    key.has_passphrase = bool(new)
    key.save(update_fields=["sealed_key", "has_passphrase"])


def transfer_credits(
    *, source: Key, target_address: str, amount: int, key_passphrase: str, request_id: str
) -> None:
    """Move credits from one of the user's account keys to any account address."""
    if source.kind != KeyKind.ACCOUNT:
        raise WalletError("Only account keys hold credits.")
    target_address = normalise_address(target_address)
    if target_address == source.address:
        raise WalletError("Choose an account other than the one paying.")
    private_key_of(key=source, key_passphrase=key_passphrase)  # proves the owner may use it
    with transaction.atomic():
        bank.transfer(
            source=bank.account_for_address(source.address),
            target=bank.account_for_address(target_address),
            amount=amount,
            idempotency_key=f"transfer:{source.address}:{request_id}",
            memo=f"transfer to {target_address}",
        )


def normalise_address(address: str) -> str:
    """EIP-55 form of an address given with or without 0x, in any case."""
    text = address.strip()
    if not text.startswith(("0x", "0X")):
        text = "0x" + text
    if not re.fullmatch(r"0[xX][0-9a-fA-F]{40}", text):
        raise WalletError(f"{address!r} is not an account address (0x and 40 hex digits).")
    digits = text[2:]
    mixed_case = digits != digits.lower() and digits != digits.upper()
    if mixed_case and not is_checksum_address("0x" + digits):
        raise WalletError(f"{address!r} has a wrong EIP-55 checksum: check it for typing errors.")
    return to_checksum_address("0x" + digits)
