"""Random runs of a market-value job keep the books whole: results of random CPU times in random
batches, escrow top-ups of random sizes (some more than the payer holds), and at the end enough
credits to finish. After every step no credit appeared or vanished (payer, escrow, worker and
fees add up to what they held at the start), every result's cost is either paid or owed to its
worker (each at least one base unit, rounded up), debts come before anything else the escrow
holds, and a running job with debts is paused; at the end the debts are paid, the escrow is
empty and every result was paid its metered time at the job's rate. Drives the scheduler's
services directly, on SQLite and (with DATABASE_URL) PostgreSQL."""

from __future__ import annotations

import math
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.bank import selectors as ledger
from portal.bank.services import FEES_ADDRESS
from portal.scheduler import pricing, services
from portal.scheduler.errors import SchedulerError
from portal.scheduler.models import Job, Slice, SliceStatus
from portal.wallet.models import Key

pytestmark = pytest.mark.django_db

SLICES = 8
RATE = 1234  # base units per CPU-second: the setting below (odd, so that costs round)
computes = st.tuples(st.just("compute"), st.integers(1, 3), st.integers(0, 150_000))
escrows = st.tuples(st.just("escrow"), st.integers(1, 400_000), st.just(0))
steps = st.lists(st.one_of(computes, escrows), min_size=1, max_size=12)


class Run:
    """One market-value job of SLICES slices, its payer and its one worker."""

    def __init__(self, owner: Any, volunteer: Any, budget: int, *, is_open: bool = False) -> None:
        self.payer = Key.objects.get(user=owner, is_default=True).address
        self.payee = Key.objects.get(user=volunteer, is_default=True).address
        self.volunteer = volunteer
        spec = services.JobSpec(
            ref=uuid.uuid4().hex,
            language="python",
            source="def work(x):\n    return x\n",
            args=[],
            input_kind="values",
            values=[1, 2] if is_open else list(range(SLICES)),
            is_open=is_open,
            cpu_rate=RATE,
            budget=budget,
        )
        self.job, _ = services.deploy_job(
            owner=owner, identity="0x" + "1" * 40, payer=self.payer, spec=spec
        )
        self.accrued = 0  # what the kept results cost at the rate
        self.held_at_start = self.holdings()

    def holdings(self) -> int:
        addresses = [self.payer, self.payee, FEES_ADDRESS, f"escrow:{self.job.id}"]
        return sum(ledger.balances_of(addresses).values())

    def compute(self, limit: int, ms: int) -> None:
        task = services.claim_slices(worker="w1", limit=limit, user=self.volunteer)
        if task is None:
            return
        numbers = [number for number, _ in task.slices]
        Slice.objects.filter(job=self.job, number__in=numbers).update(
            leased_at=timezone.now() - timedelta(seconds=200)
        )
        services.record_results(
            worker="w1",
            payee=self.volunteer,
            payee_address=self.payee,
            job_id=self.job.id,
            results=[(number, number) for number in numbers],
            errors=[],
            batch_key=uuid.uuid4().hex,
            cpu_ms={number: ms for number in numbers},
        )
        self.accrued += max(math.ceil(RATE * ms * len(numbers) / 1000), len(numbers))

    def escrow(self, amount: int) -> None:
        try:
            services.add_escrow(
                job_id=self.job.id,
                identity=self.job.identity,
                ref=uuid.uuid4().hex,
                payer=self.payer,
                amount=amount,
            )
        except SchedulerError as refused:
            assert refused.code in {"ENOFUNDS", "ECLOSED"}

    def check(self) -> None:
        job = Job.objects.get(pk=self.job.pk)
        assert self.holdings() == self.held_at_start  # nothing appeared or vanished
        assert job.paid + pricing.owed_total(job) == self.accrued  # paid or owed, never lost
        escrow = ledger.balance_of(f"escrow:{job.id}")
        assert escrow >= 0 and (escrow == 0 or not job.owed)  # debts are paid before all else
        if job.owed and job.status == "running":
            assert job.nofunds


@settings(max_examples=30, deadline=None)
@given(budget=st.integers(1, 300_000), run_steps=steps)
def run_market_job(owner: Any, volunteer: Any, budget: int, run_steps: list[Any]) -> None:
    with transaction.atomic():
        run = Run(owner, volunteer, budget)
        for step, amount, ms in run_steps:
            if step == "compute":
                run.compute(amount, ms)
            else:
                run.escrow(amount)
            run.check()
        finish(run)
        transaction.set_rollback(True)


def finish(run: Run) -> None:
    """Add what is needed until the job finishes: then its debts are paid and its escrow empty."""
    for _ in range(4 * SLICES):
        job = Job.objects.get(pk=run.job.pk)
        if job.status != "running":
            break
        if job.nofunds:
            run.escrow(pricing.owed_total(job) + 2_000_000)
        run.compute(3, 1_000)
        run.check()
    job = Job.objects.get(pk=run.job.pk)
    assert (job.status, job.computed, job.owed) == ("finished", SLICES, {})
    assert job.paid == run.accrued
    assert ledger.balance_of(f"escrow:{job.id}") == 0


def test_random_runs_of_a_market_value_job_keep_every_credit(
    first_dev: Any, volunteer: Any, settings: Any
) -> None:
    settings.MARKET_CPU_SECOND_PRICE = "0.000001234"
    settings.MARKET_ESTIMATION_SLICES = 2
    assert not Slice.objects.filter(status=SliceStatus.LEASED).exists()
    run_market_job(first_dev, volunteer)


def test_an_open_job_closed_with_debts_finishes_only_once_they_are_paid(
    first_dev: Any, volunteer: Any, settings: Any
) -> None:
    settings.MARKET_CPU_SECOND_PRICE = "0.000001234"
    settings.MARKET_ESTIMATION_SLICES = 2
    run = Run(first_dev, volunteer, budget=1, is_open=True)
    run.compute(3, 10_000)  # 2 estimation slices: 24,680 base units owed less the 1 paid
    assert services.close_job(job_id=run.job.id, identity=run.job.identity) == (
        Job.objects.get(pk=run.job.pk),
        False,
    )
    assert Job.objects.get(pk=run.job.pk).status == "running"  # its debts keep it open
    run.escrow(pricing.owed_total(Job.objects.get(pk=run.job.pk)))
    job = Job.objects.get(pk=run.job.pk)
    assert (job.status, job.owed, job.paid) == ("finished", {}, run.accrued)
    assert ledger.balance_of(f"escrow:{job.id}") == 0
