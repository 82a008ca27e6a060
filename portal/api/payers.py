"""Which account pays for a REST request, and what shows the caller may spend from it.

A deploy names the paying account in dcp-rest's `account`: by `address` or `label` among the
caller's account keys (an API key pays only from its own account), or as a keystore (`json`)
with its `password`, which any caller may give: opening the keystore proves they hold the key.
A `password` also unlocks an account key protected by an extra passphrase. An account unlocked
by a secret at deploy time pays for the job's later batches without it (models.JobPayment), as
dcp-rest's open jobs are fed with `sliceData` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from dcp.keys.keystore import KeystoreError
from portal.scheduler.models import Job
from portal.wallet.models import Key, KeyKind
from portal.wallet.sealing import WrongKeyPassphrase
from portal.wallet.services import WalletError, normalise_address, private_key_of

from . import throttle
from .auth import Principal, opened_address
from .errors import ApiError
from .models import JobPayment
from .schemas import AccountIn


@dataclass(frozen=True)
class Payer:
    """The address that pays, and whether a secret unlocked it for this job."""

    address: str
    unlocked: bool = False


def deploy_payer(request: HttpRequest, principal: Principal, account: AccountIn | None) -> Payer:
    """The account a deploy pays from: `account.json`, else the key `account` names, else the
    API key's account or the caller's default account."""
    account = account or AccountIn()
    if account.keystore is not None:
        return _keystore_payer(request, account.keystore, account.password, account.address)
    key = paying_key(principal, address=account.address or None, label=account.label or None)
    return Payer(key.address, unlocked=_unlock(request, key, account.password or ""))


def batch_payer(principal: Principal, job: Job) -> str:
    """The account that pays for more slices of a job: the one that pays for the job."""
    if JobPayment.objects.filter(job=job, address=job.payer).exists():
        return job.payer
    key = paying_key(principal, address=job.payer)
    if key.has_passphrase:
        raise _locked()
    return key.address


def remember_unlocked(job: Job, payer: Payer) -> None:
    """Let the job's later batches be paid from an account its deploy unlocked."""
    if payer.unlocked:
        JobPayment.objects.get_or_create(job=job, defaults={"address": payer.address})


def paying_key(
    principal: Principal, *, address: str | None = None, label: str | None = None
) -> Key:
    """The caller's account key named by address or label (else the default one, or the API
    key's), refusing one the caller may not pay from."""
    wanted = _address(address) if address is not None else None
    if principal.api_key is not None:
        return _api_key_account(principal.api_key.account, wanted, label)
    accounts = Key.objects.filter(user=principal.user, kind=KeyKind.ACCOUNT)
    if wanted is not None:
        found, why = accounts.filter(address=wanted), f"{wanted} is not one of your accounts"
    elif label is not None:
        found, why = accounts.filter(label=label), f"you have no account key labelled {label!r}"
    else:
        found, why = accounts.filter(is_default=True), "you have no default account key"
    key = found.first()
    if key is None:
        raise ApiError(403, "EACCOUNT", why)
    return key


def _api_key_account(key: Key, wanted: str | None, label: str | None) -> Key:
    if (wanted is not None and wanted != key.address) or (label is not None and label != key.label):
        raise ApiError(
            403, "EACCOUNT", f"this API key pays only from account {key.label} ({key.address})"
        )
    return key


def _unlock(request: HttpRequest, key: Key, password: str) -> bool:
    """Check the passphrase of a key that has one; True when it was needed and right."""
    if not key.has_passphrase:
        return False
    if not password:
        raise _locked()
    throttle.check_failures(request, key.address)
    try:
        with throttle.kdf_slot():
            private_key_of(key=key, key_passphrase=password)
    except WrongKeyPassphrase:
        throttle.note_failure(request, key.address)
        raise ApiError(
            403, "EKEYLOCKED", f"account.password is not the passphrase of account {key.address}"
        ) from None
    return True


def _locked() -> ApiError:
    return ApiError(
        403,
        "EKEYLOCKED",
        "this account key is protected by a passphrase: give it in account.password when "
        "deploying, remove it, or use the Python client",
    )


def _keystore_payer(
    request: HttpRequest, keystore: dict[str, Any], password: str | None, named: str | None
) -> Payer:
    try:
        address = opened_address(request, keystore, password or "")
    except KeystoreError as error:
        raise ApiError(403, "EACCOUNT", f"account.json did not open: {error}") from None
    if named and _address(named) != address:
        raise ApiError(
            400, "EINVALID", f"account.address is not {address}, the key in account.json"
        )
    return Payer(address, unlocked=True)


def _address(text: str) -> str:
    try:
        return normalise_address(text)
    except WalletError as error:
        raise ApiError(400, "EINVALID", f"account.address: {error}") from None
