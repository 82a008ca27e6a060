"""Reads of the ledger used by more than one caller."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import batched
from typing import Any

from django.db.models import F, QuerySet, Subquery, Sum, Window

from .models import AccountKind, Entry, LedgerAccount
from .services import ESCROW_PREFIX


def balance_of(address: str) -> int:
    """The cached balance of an address in base units; 0 for an address never credited."""
    balance = (
        LedgerAccount.objects.filter(address=address).values_list("balance", flat=True).first()
    )
    return balance or 0


def balances_of(addresses: list[str]) -> dict[str, int]:
    rows = LedgerAccount.objects.filter(address__in=addresses).values_list("address", "balance")
    found = dict(rows)
    return {address: found.get(address, 0) for address in addresses}


def total_supply() -> int:
    """Credits ever minted: minus the mint's balance."""
    mint = LedgerAccount.objects.filter(kind=AccountKind.MINT).values_list("balance", flat=True)
    return -sum(mint)


def sum_of_balances() -> int:
    """All balances outside the mint; equals total_supply() when the ledger is whole."""
    total = LedgerAccount.objects.exclude(kind=AccountKind.MINT).aggregate(total=Sum("balance"))
    return total["total"] or 0


def entries_balance(account: LedgerAccount) -> int:
    """The balance recomputed from the entries, to check the cached one."""
    return Entry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"] or 0


# --- statements -------------------------------------------------------------------------------

STATEMENT_PAGE_SIZE = 50
STATEMENT_CHUNK = 2000  # entries read at a time for a whole statement


class StatementPageError(ValueError):
    """A statement page number that does not exist."""


@dataclass(frozen=True)
class StatementLine:
    """One entry of an account's statement and the balance it left the account with."""

    entry: int  # the entry's id: statements are in posting order
    time: datetime
    kind: str  # the transaction's kind: mint, transfer, escrow, payment or refund
    memo: str
    amount: int  # base units: positive into the account, negative out of it
    balance: int  # the account's balance just after this entry
    job: str  # the job of an escrow, payment or refund; "" for the others
    counterparties: tuple[str, ...]  # addresses on the other side of the transaction


@dataclass(frozen=True)
class StatementPage:
    """One page of a statement, newest entry first."""

    lines: list[StatementLine]
    number: int  # from 1
    pages: int  # at least 1, even for an empty statement
    count: int  # entries in the whole statement

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def statement_page(
    address: str, *, page: int = 1, per_page: int = STATEMENT_PAGE_SIZE
) -> StatementPage:
    """Page `page` of the statement of the account at `address`, newest entry first; raises
    StatementPageError for a page the statement does not have."""
    count = Entry.objects.filter(account__address=address).count()
    pages = max(1, -(-count // per_page))
    if not 1 <= page <= pages:
        raise StatementPageError(f"page {page} does not exist: this statement has {pages}")
    start = (page - 1) * per_page
    rows = list(_statement_rows(address)[start : start + per_page])
    return StatementPage(lines=_lines(address, rows), number=page, pages=pages, count=count)


def statement_lines(address: str) -> Iterator[StatementLine]:
    """The whole statement of the account at `address`, newest entry first, read by one query
    in chunks so that memory stays flat however long it is."""
    rows = _statement_rows(address).iterator(chunk_size=STATEMENT_CHUNK)
    for chunk in batched(rows, STATEMENT_CHUNK):
        yield from _lines(address, list(chunk))


def _statement_rows(address: str) -> QuerySet[Any, Any]:
    """The account's entries, newest first, with what each and all newer ones moved in all.

    The balance an entry left is the stored balance less what the newer entries moved, so the
    newest line always shows the balance the account card shows. The stored balance is read in
    the same statement as the entries, so both come from one snapshot of the ledger. Posts to
    one account queue on its row lock (services._apply), so its entries' ids are in the order
    they were posted.
    """
    stored = LedgerAccount.objects.filter(address=address).values("balance")
    return (
        Entry.objects.filter(account__address=address)
        .annotate(
            moved_since=Window(Sum("amount"), order_by=F("id").desc()),
            stored=Subquery(stored),
        )
        .order_by("-id")
        .values(
            "id",
            "txn_id",
            "txn__kind",
            "txn__memo",
            "txn__created_at",
            "amount",
            "moved_since",
            "stored",
        )
    )


def _lines(address: str, rows: list[dict[str, Any]]) -> list[StatementLine]:
    others = _other_legs(address, [row["txn_id"] for row in rows])
    return [_line(row, others.get(row["txn_id"], [])) for row in rows]


def _line(row: dict[str, Any], others: list[tuple[str, int]]) -> StatementLine:
    amount = int(row["amount"])
    escrows = [a for a, _ in others if a.startswith(ESCROW_PREFIX)]
    return StatementLine(
        entry=row["id"],
        time=row["txn__created_at"],
        kind=row["txn__kind"],
        memo=row["txn__memo"],
        amount=amount,
        balance=int(row["stored"] or 0) - int(row["moved_since"]) + amount,
        job=escrows[0].removeprefix(ESCROW_PREFIX) if escrows else "",
        # The other side moved the other way: a payment's payee sees the escrow that paid it,
        # not the other payees of the same batch.
        counterparties=tuple(a for a, moved in others if (moved > 0) != (amount > 0)),
    )


def _other_legs(address: str, txn_ids: list[int]) -> dict[int, list[tuple[str, int]]]:
    """The legs of these transactions on accounts other than `address`, by transaction."""
    legs = (
        Entry.objects.filter(txn_id__in=txn_ids)
        .exclude(account__address=address)
        .order_by("id")
        .values_list("txn_id", "account__address", "amount")
    )
    found: dict[int, list[tuple[str, int]]] = {}
    for txn_id, other, amount in legs:
        found.setdefault(txn_id, []).append((other, amount))
    return found
