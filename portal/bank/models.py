"""The double-entry ledger: accounts, transactions and the entries that move credits.

Amounts are integers of the base unit (see dcp/protocol/credits.py). Every transaction's entries
sum to zero and each account caches its balance, updated in the same database transaction as
the entries.
Only the mint may go below zero: minus its balance is the total supply. Write only through
services.py.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class AccountKind(models.TextChoices):
    USER = "user", "user account"
    MINT = "mint", "mint"
    FEES = "fees", "scheduler fees"
    ESCROW = "escrow", "job escrow"


class LedgerAccount(models.Model):
    address = models.CharField(max_length=80, unique=True)
    kind = models.CharField(max_length=8, choices=AccountKind.choices, default=AccountKind.USER)
    balance = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(balance__gte=0) | Q(kind=AccountKind.MINT),
                name="bank_balance_never_below_zero",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.address}"


class Txn(models.Model):
    """One movement of credits; `idempotency_key` makes repeating it a no-op."""

    idempotency_key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16)
    memo = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "transaction"
        # The charts read payments by time (portal/bank/selectors.py, payments_into).
        indexes = [models.Index(fields=["created_at"], name="bank_txn_created_at")]

    def __str__(self) -> str:
        return f"{self.kind} {self.idempotency_key}"


class Entry(models.Model):
    txn = models.ForeignKey(Txn, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries")
    amount = models.BigIntegerField()

    class Meta:
        verbose_name_plural = "entries"
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="bank_entry_not_zero")]
        # An account's statement, in order (portal/bank/selectors.py, statement_page).
        indexes = [models.Index(fields=["account", "id"], name="bank_entry_account_id")]

    def __str__(self) -> str:
        return f"{self.amount:+d} {self.account.address}"
