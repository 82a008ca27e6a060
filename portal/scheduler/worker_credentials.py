"""Who a worker works as, and where it is paid: a signed-in session, a worker token, or
nobody (anonymous workers, where the operator allows them).

Worker tokens are made on the Workers page, shown once and kept as a SHA-256 digest (as API
keys are); they open the worker socket only. Anonymous workers all work as one user of the
portal's own, ANONYMOUS_WORKERS_EMAIL, which no one can sign in as: to the scheduler they are
one party, so two anonymous connections never make a quorum together, one lost lease counts
once for all of them, and they share one reputation, which is never trusted
(verification.py) and whose lost votes suspend them all.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal.bank.models import AccountKind, LedgerAccount
from portal.users.models import User
from portal.wallet.digests import secret_digest, secret_matches
from portal.wallet.models import Key, KeyKind
from portal.wallet.services import WalletError, normalise_address

from . import notify
from .errors import SchedulerError
from .models import WORKER_TOKEN_NAME_LENGTH, WorkerToken

log = logging.getLogger(__name__)

TOKEN_PATTERN = re.compile(r"dcpw_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
ANONYMOUS_WORKERS_EMAIL = "anonymous-workers@dcp-portal.invalid"
LAST_USED_RESOLUTION = timedelta(minutes=1)


# --- worker tokens ----------------------------------------------------------------------------


def create_worker_token(*, owner: User, name: str) -> tuple[WorkerToken, str]:
    """A new worker token of `owner`; returns it and its text, which is stored nowhere and
    cannot be shown again."""
    name = name.strip()
    if not name or len(name) > WORKER_TOKEN_NAME_LENGTH:
        raise SchedulerError(
            "EINVALID", f"Name the token in 1 to {WORKER_TOKEN_NAME_LENGTH} characters."
        )
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    text = f"dcpw_{prefix}_{secret}"
    token = WorkerToken.objects.create(
        owner=owner, name=name, prefix=prefix, digest=secret_digest(text)
    )
    return token, text


@transaction.atomic
def revoke_worker_token(*, token: WorkerToken) -> bool:
    """Revoke a worker token: new connections with it are refused, and the workers that use
    it now are disconnected. False when it was revoked already."""
    revoked = WorkerToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if revoked:
        notify.worker_token_revoked(token.pk)
    return bool(revoked)


def token_owner(text: str) -> WorkerToken | None:
    """The active token `text` is (its owner able to sign in), or None; notes its use."""
    match = TOKEN_PATTERN.fullmatch(text)
    token = (
        WorkerToken.objects.select_related("owner").filter(prefix=match.group(1)).first()
        if match
        else None
    )
    if (
        token is None
        or not secret_matches(token.digest, text)
        or not token.is_active
        or not token.owner.is_active
    ):
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        WorkerToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


# --- who a worker is --------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerIdentity:
    """Who a worker connection works as: its user, and how it proved that."""

    user: User
    via: str  # "session", "token" or "anonymous"
    token_id: int | None = None

    @property
    def anonymous(self) -> bool:
        return self.via == "anonymous"


def authenticate_worker(*, session_user: User | None, token: str | None) -> WorkerIdentity:
    """Who a worker saying hello works as: its signed-in session's user (a token is then not
    read), else its worker token's owner, else anonymous where ALLOW_ANONYMOUS_WORKERS.
    ENOTAUTHENTICATED otherwise."""
    if session_user is not None:
        return WorkerIdentity(user=session_user, via="session")
    if token is not None:
        found = token_owner(token)
        if found is None:
            raise SchedulerError("ENOTAUTHENTICATED", "unknown or revoked worker token")
        return WorkerIdentity(user=found.owner, via="token", token_id=found.pk)
    if settings.ALLOW_ANONYMOUS_WORKERS:
        return WorkerIdentity(user=anonymous_workers_user(), via="anonymous")
    raise SchedulerError(
        "ENOTAUTHENTICATED", "sign in to the portal, or say hello with a worker token"
    )


def anonymous_workers_user() -> User:
    """The portal's own user that anonymous workers work as, made on first use; it has no
    password and is inactive, so no one signs in as it."""
    user, _ = User.objects.get_or_create(
        email=ANONYMOUS_WORKERS_EMAIL, defaults={"is_active": False, "password": "!"}
    )
    if user.is_active or user.has_usable_password():  # pragma: no cover - a misconfiguration
        log.error("%s is a person's account: anonymous workers are refused", user.email)
        raise SchedulerError("ENOTAUTHENTICATED", "anonymous workers are not available")
    return user


def is_anonymous_workers(user: User) -> bool:
    """Whether this is the user all anonymous workers work as."""
    return user.email == ANONYMOUS_WORKERS_EMAIL


# --- where a worker is paid -------------------------------------------------------------------


def named_payee(address: str) -> str:
    """The account a hello's `payment_address` names, in EIP-55 form: any account of this
    portal, whoever holds it (EINVALID for an address no account has)."""
    try:
        address = normalise_address(address)
    except WalletError as error:
        raise SchedulerError("EINVALID", str(error)) from None
    known = (
        Key.objects.filter(kind=KeyKind.ACCOUNT, address=address).exists()
        or LedgerAccount.objects.filter(kind=AccountKind.USER, address=address).exists()
    )
    if not known:
        raise SchedulerError("EINVALID", f"no account with address {address}")
    return address
