"""Reads of the ledger used by more than one caller."""

from __future__ import annotations

from django.db.models import Sum

from .models import AccountKind, Entry, LedgerAccount


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
