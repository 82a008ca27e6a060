"""Reads of the ledger used by more than one caller."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from itertools import batched
from typing import Any

from django.core.cache import cache
from django.db.models import (
    Case,
    F,
    FloatField,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.functions import Cast, StrIndex, Substr
from django.utils import timezone

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


# --- payment history --------------------------------------------------------------------------

# The memo of a payment for results (scheduler.services._pay): "<N> results of job <id>".
RESULTS_MEMO = " results of job "
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A payment is dated when it is posted and committed at once: a bucket that ended this long ago
# takes no more payments, so its totals are cached (for HISTORY_CACHE_SECONDS) and not counted
# again each time a chart is drawn.
SETTLED_AFTER = timedelta(minutes=5)
HISTORY_CACHE_SECONDS = 24 * 3600
# Bucket widths a chart's time axis reads well in; a longer span takes whole weeks.
NICE_WIDTHS = (
    *(timedelta(seconds=n) for n in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)),
    *(timedelta(minutes=n) for n in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)),
    *(timedelta(hours=n) for n in (1, 2, 3, 4, 6, 8, 12)),
    *(timedelta(days=n) for n in (1, 2, 3, 4, 5, 7)),
)


@dataclass(frozen=True)
class PaymentBucket:
    """Payments for results made in [start, start + the series' width)."""

    start: datetime
    credits: int  # base units
    results: int  # the results those credits paid for


def bucket_width(span: timedelta, points: int) -> timedelta:
    """The narrowest nice bucket width that cuts `span` into at most about `points` buckets."""
    rough = span / max(points, 1)
    for width in NICE_WIDTHS:
        if width >= rough:
            return width
    week = NICE_WIDTHS[-1]
    return week * -(-rough // week)


def bucket_start(moment: datetime, width: timedelta) -> datetime:
    """The start of the bucket of `width` holding `moment`: buckets are aligned on the epoch."""
    return EPOCH + (moment - EPOCH) // width * width


def payments_into(
    addresses: Sequence[str], *, since: datetime, until: datetime, width: timedelta
) -> list[PaymentBucket]:
    """Payments for results into the accounts at `addresses`, in buckets of `width` from the one
    holding `since` to the one holding `until`. A payment that paid several users (a verified
    job's batch) counts for these accounts the share of its results their credits are."""
    entries = Entry.objects.filter(account__address__in=list(addresses), amount__gt=0)
    series = "into:" + sha256("\n".join(sorted(addresses)).encode()).hexdigest()[:32]
    return _bucketed(series, entries, F("amount"), _payees_share(), since, until, width)


def payments_out_of(
    address: str, *, since: datetime, until: datetime, width: timedelta
) -> list[PaymentBucket]:
    """Payments for results out of the (escrow) account at `address`, in buckets of `width`
    from the one holding `since` to the one holding `until`."""
    entries = Entry.objects.filter(account__address=address, amount__lt=0)
    series = f"out:{address}"
    return _bucketed(series, entries, -F("amount"), _results_in_memo(), since, until, width)


def _bucketed(
    series: str,
    entries: QuerySet[Entry],
    credits: Any,
    results: Any,
    since: datetime,
    until: datetime,
    width: timedelta,
) -> list[PaymentBucket]:
    """The buckets of a series: those that settled (ended SETTLED_AFTER ago) from the cache
    where it has them, from the first it lacks on counted in SQL (then cached if settled)."""
    first = bucket_start(since, width)
    starts = [first + n * width for n in range((until - first) // width + 1)]
    step = int(width.total_seconds())
    keys = [f"bank:payments:{series}:{step}:{int(start.timestamp())}" for start in starts]
    settled = sum(1 for start in starts if start + width <= timezone.now() - SETTLED_AFTER)
    known = cache.get_many(keys[:settled])
    fresh = next((n for n in range(settled) if keys[n] not in known), settled)
    counted = _counted(entries, credits, results, starts[fresh:], width)
    totals = [known[key] for key in keys[:fresh]]
    totals += [counted.get(n, (0, 0)) for n in range(len(starts) - fresh)]
    cache.set_many({keys[n]: totals[n] for n in range(fresh, settled)}, HISTORY_CACHE_SECONDS)
    return [PaymentBucket(start, *total) for start, total in zip(starts, totals, strict=True)]


def _counted(
    entries: QuerySet[Entry], credits: Any, results: Any, starts: list[datetime], width: timedelta
) -> dict[int, tuple[int, int]]:
    """(credits, results) of the payments in each bucket of `starts` that has any, by index."""
    if not starts:
        return {}
    rows = (
        entries.filter(
            txn__kind="payment",
            txn__created_at__gte=starts[0],
            txn__created_at__lt=starts[-1] + width,
        )
        .annotate(bucket=_bucket_of(starts))
        .values("bucket")
        .annotate(credits=Sum(credits), results=Sum(results))
        .order_by()
        .values_list("bucket", "credits", "results")
    )
    return {bucket: (int(paid or 0), round(paid_for or 0)) for bucket, paid, paid_for in rows}


def _bucket_of(starts: list[datetime]) -> Case:
    """The index in `starts` of the bucket a payment's time falls in, found by comparisons the
    database makes itself: its date functions run in Python under SQLite, row by row."""
    later = (When(txn__created_at__lt=start, then=Value(n)) for n, start in enumerate(starts[1:]))
    return Case(*later, default=Value(len(starts) - 1), output_field=IntegerField())


def _results_in_memo() -> Any:
    """The number of results a payment paid for, read from its memo (0 for another memo)."""
    number = Substr("txn__memo", 1, StrIndex("txn__memo", Value(" ")) - 1)
    return Case(
        When(txn__memo__contains=RESULTS_MEMO, then=Cast(number, FloatField())),
        default=Value(0.0),
        output_field=FloatField(),
    )


def _payees_share() -> Any:
    """An entry's share of its payment's results: the results times its part of what the
    payment paid to users (the fees account's commission aside)."""
    to_users = (
        Entry.objects.filter(txn=OuterRef("txn"), amount__gt=0, account__kind=AccountKind.USER)
        .values("txn")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    amount = Cast("amount", FloatField())
    return _results_in_memo() * amount / Cast(Subquery(to_users), FloatField())
