"""Every write to the ledger. Each function posts at most one balanced transaction.

Each takes an `idempotency_key`: calling it again with the same key returns the transaction
already posted and moves nothing (the key is unique in the database, so this holds across
processes too). Spending more than an account holds raises InsufficientFunds and posts nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F

from .models import AccountKind, Entry, LedgerAccount, Txn

MINT_ADDRESS = "system:mint"
FEES_ADDRESS = "system:fees"
ESCROW_PREFIX = "escrow:"


class BankError(Exception):
    """A refused ledger operation; `code` is stable for API replies."""

    code = "EBANK"


class InsufficientFunds(BankError):
    code = "ENOFUNDS"


class IdempotencyConflict(BankError):
    """The key was used before for a different movement of credits."""

    code = "EIDEMPOTENCY"


Legs = Sequence[tuple[LedgerAccount, int]]


def system_account(kind: AccountKind) -> LedgerAccount:
    """The single mint or fees account, created on first use."""
    address = {AccountKind.MINT: MINT_ADDRESS, AccountKind.FEES: FEES_ADDRESS}[kind]
    account, _ = LedgerAccount.objects.get_or_create(address=address, defaults={"kind": kind})
    return account


def account_for_address(address: str) -> LedgerAccount:
    """The user ledger account of an account key's address, created on first use."""
    account, _ = LedgerAccount.objects.get_or_create(
        address=address, defaults={"kind": AccountKind.USER}
    )
    return account


def mint(*, target: LedgerAccount, amount: int, idempotency_key: str, memo: str = "") -> Txn:
    """Create `amount` new credits in `target` (grants such as First Devs)."""
    _require_positive(amount)
    mint_account = system_account(AccountKind.MINT)
    return _post(
        kind="mint",
        memo=memo,
        idempotency_key=idempotency_key,
        legs=[(mint_account, -amount), (target, amount)],
    )


def transfer(
    *,
    source: LedgerAccount,
    target: LedgerAccount,
    amount: int,
    idempotency_key: str,
    memo: str = "",
) -> Txn:
    """Move `amount` from `source` to `target`."""
    _require_positive(amount)
    if source.pk == target.pk:
        raise BankError("an account cannot transfer to itself")
    return _post(
        kind="transfer",
        memo=memo,
        idempotency_key=idempotency_key,
        legs=[(source, -amount), (target, amount)],
    )


def escrow_for_job(job_ref: str) -> LedgerAccount:
    """The escrow account that holds a job's payment until slices are paid or refunded."""
    account, _ = LedgerAccount.objects.get_or_create(
        address=f"{ESCROW_PREFIX}{job_ref}", defaults={"kind": AccountKind.ESCROW}
    )
    return account


def open_escrow(
    *, job_ref: str, payer: LedgerAccount, amount: int, idempotency_key: str
) -> LedgerAccount:
    """Move `amount` from the payer into the job's escrow (again with a new key tops it up)."""
    _require_positive(amount)
    escrow = escrow_for_job(job_ref)
    _post(
        kind="escrow",
        memo=f"escrow for job {job_ref}",
        idempotency_key=idempotency_key,
        legs=[(payer, -amount), (escrow, amount)],
    )
    return escrow


def pay_from_escrow(
    *,
    escrow: LedgerAccount,
    payments: Sequence[tuple[LedgerAccount, int]],
    idempotency_key: str,
    memo: str = "",
    commission_percent: Decimal = Decimal(0),
) -> Txn | None:
    """Pay several recipients out of a job's escrow in one transaction (one per result batch).
    With a commission, each payment's commission (commission_of) goes to the fees account
    instead of its recipient: the escrow pays out the same total either way."""
    payments = [(account, amount) for account, amount in payments if amount]
    for _, amount in payments:
        _require_positive(amount)
    if not payments:
        return None
    total = sum(amount for _, amount in payments)
    fees = [commission_of(amount, commission_percent) for _, amount in payments]
    legs = [(account, amount - fee) for (account, amount), fee in zip(payments, fees, strict=True)]
    if sum(fees):
        legs.append((system_account(AccountKind.FEES), sum(fees)))
    return _post(
        kind="payment",
        memo=memo,
        idempotency_key=idempotency_key,
        legs=[(escrow, -total), *[(account, amount) for account, amount in legs if amount]],
    )


def commission_of(amount: int, percent: Decimal) -> int:
    """The scheduler's commission on a payment of `amount` base units: `percent` of it,
    rounded down to a base unit (never more than the payment)."""
    if not 0 <= percent <= 100:
        raise BankError(f"a commission is 0 to 100 percent, not {percent}")
    return min(int(amount * percent / 100), amount)


@transaction.atomic
def refund_escrow(
    *, escrow: LedgerAccount, target: LedgerAccount, idempotency_key: str
) -> Txn | None:
    """Return whatever is left in a job's escrow to `target`; None when nothing is left."""
    # Lock the escrow before looking for the key, so that a concurrent refund with the same key
    # has committed by then and its transaction is the answer, not an escrow found empty.
    remaining = LedgerAccount.objects.select_for_update().get(pk=escrow.pk).balance
    existing = Txn.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        _require_refund_of(existing, escrow=escrow, target=target, key=idempotency_key)
        return existing
    if remaining == 0:
        return None
    return _post(
        kind="refund",
        memo=f"refund of {escrow.address}",
        idempotency_key=idempotency_key,
        legs=[(escrow, -remaining), (target, remaining)],
    )


def _require_refund_of(txn: Txn, *, escrow: LedgerAccount, target: LedgerAccount, key: str) -> None:
    entries = txn.entries.values_list("account_id", "amount")
    posted = sorted((account_id, amount > 0) for account_id, amount in entries)
    if txn.kind != "refund" or posted != sorted([(escrow.pk, False), (target.pk, True)]):
        raise IdempotencyConflict(f"idempotency key {key!r} was used for another posting")


def _require_positive(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise BankError(f"amount must be a positive whole number of base units, not {amount!r}")


def _post(*, kind: str, memo: str, idempotency_key: str, legs: Legs) -> Txn:
    if sum(amount for _, amount in legs) != 0:
        raise BankError("a transaction's entries must sum to zero")
    existing = _replayed(idempotency_key, legs)
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            txn = Txn.objects.create(idempotency_key=idempotency_key, kind=kind, memo=memo[:200])
            # Lock rows in one order everywhere so that concurrent posts cannot deadlock.
            for account, amount in sorted(legs, key=lambda leg: leg[0].pk):
                _apply(account, amount)
            Entry.objects.bulk_create(
                Entry(txn=txn, account=account, amount=amount) for account, amount in legs
            )
    except IntegrityError:
        # A concurrent post with the same key won the race: its transaction is the answer.
        existing = _replayed(idempotency_key, legs)
        if existing is None:
            raise
        return existing
    for account, amount in legs:
        account.balance += amount
    return txn


def _apply(account: LedgerAccount, amount: int) -> None:
    rows = LedgerAccount.objects.filter(pk=account.pk)
    if amount < 0 and account.kind != AccountKind.MINT:
        # The balance check and the debit are one statement, so concurrent spends queue on the
        # row lock and each sees the balance the previous one left.
        rows = rows.filter(balance__gte=-amount)
    if rows.update(balance=F("balance") + amount) != 1:
        raise InsufficientFunds(f"account {account.address} holds too few credits")


def _replayed(idempotency_key: str, legs: Legs) -> Txn | None:
    txn = Txn.objects.filter(idempotency_key=idempotency_key).first()
    if txn is None:
        return None
    posted = sorted(txn.entries.values_list("account_id", "amount"))
    if posted != sorted((account.pk, amount) for account, amount in legs):
        raise IdempotencyConflict(
            f"idempotency key {idempotency_key!r} was used for another posting"
        )
    return txn
