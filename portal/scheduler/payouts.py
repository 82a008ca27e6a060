"""Paying a job's workers out of its escrow: one ledger transaction for all of a batch's payees,
less the scheduler's commission (SCHEDULER_COMMISSION_PERCENT, to the fees account), counted
in the job's `paid` and in each worker user's tally. Results paid as they come and debts paid
later (pricing.pay_debts) both go through here.

Runs inside the caller's transaction, holding the job's row lock."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from django.conf import settings
from django.db.models import F

from portal.bank import services as bank

from .models import Job, WorkerTally
from .verification import Payee


def pay_workers(
    job: Job,
    amounts: Mapping[Payee, int],
    *,
    idempotency_key: str,
    memo: str,
    results: Mapping[Payee, int] | None = None,
) -> dict[Payee, int]:
    """Pay each payee its amount (base units, before commission) from `job`'s escrow; `results`:
    how many results each is paid for, added to their tallies. Returns what each payee earned
    (after commission)."""
    percent = Decimal(settings.SCHEDULER_COMMISSION_PERCENT)
    total = sum(amounts.values())
    if total:
        bank.pay_from_escrow(
            escrow=bank.escrow_for_job(job.id),
            payments=[(bank.account_for_address(p.address), a) for p, a in amounts.items()],
            idempotency_key=idempotency_key,
            memo=memo,
            commission_percent=percent,
        )
        job.paid += total
        Job.objects.filter(pk=job.pk).update(paid=F("paid") + total)
    earned = {p: a - bank.commission_of(a, percent) for p, a in amounts.items()}
    results = results or {}
    # Tallies in one order (by user) whoever pays: two batches never wait on each other's rows.
    for payee in sorted({*earned, *results}, key=lambda p: (p.user_id, p.address)):
        count, net = results.get(payee, 0), earned.get(payee, 0)
        if count or net:
            tally, _ = WorkerTally.objects.get_or_create(user_id=payee.user_id)
            WorkerTally.objects.filter(pk=tally.pk).update(
                slices=F("slices") + count, earned=F("earned") + net
            )
    return earned
