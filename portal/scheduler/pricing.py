"""Jobs deployed at market value: priced per measured CPU-second, estimated, paused on nofunds.

A market-value job (the deploy's `market_value`) pays `cpu_rate` base units per CPU-second of
its kept results' sandbox time (each claim clipped to its lease), at least one base unit a
result. Its rate is the market price (selectors.market_price) times the deploy's multiplier,
fixed at deploy; its budget is the deploy cheque's max_total, moved into its escrow.

1. Estimation: only its first MARKET_ESTIMATION_SLICES slices are handed out. When they have
   all come back, the mean measured cost of a slice gives the estimate of the whole job
   (the `estimated` event; the job's status says `estimation` until then), and the rest of its
   slices are handed out.
2. Dispatch hands out only as many slices as the escrow can pay for, counting the slices
   workers hold at twice the mean cost (a slice may take longer than the mean), or all that
   are left once it holds their mean cost (so adding what `nofunds` said was needed finishes
   the job unless its slices turn out slower). When the escrow
   cannot pay for one more, the job pauses (`nofunds` event, status `paused`). A result that
   costs more than the escrow holds (a slice far slower than the mean, or an estimation slice
   of a small budget) is paid what it holds and the rest is owed to its worker (`Job.owed`):
   the job pauses, and the credits added next pay the debts first. A job with debts does not
   finish until they are paid.
3. An `escrow` request (job.escrow(amount) in the client) adds credits and the job resumes.

Every function here runs inside the caller's transaction, holding the job's row lock.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings

from dcp.protocol.credits import format_credits
from portal.bank import services as bank

from . import notify, payouts
from .models import Job, Slice, SliceStatus
from .selectors import job_status, market_gpu_price, market_price
from .verification import Payee

SAFETY = 2  # a held slice is counted at this many times the mean cost of a slice


def market_rates(multiplier: float) -> tuple[int, int]:
    """Base units per CPU-second and per GPU-second a job deployed now at market value x
    `multiplier` pays."""
    cpu, _ = market_price()
    gpu, _ = market_gpu_price()
    return max(round(cpu * multiplier), 1), max(round(gpu * multiplier), 1)


def estimation_slices(job: Job) -> int:
    """How many slices measure a market-value job before the rest are handed out."""
    return max(min(settings.MARKET_ESTIMATION_SLICES, job.total), 1)


def cost_of(job: Job, cpu_ms: float, results: int, gpu_ms: float = 0.0) -> int:
    """What `results` kept results of a market-value job that took `cpu_ms` of sandbox time
    and `gpu_ms` of GPU time in all cost."""
    metered = job.cpu_rate * cpu_ms + job.gpu_rate * gpu_ms
    return max(math.ceil(metered / 1000), results)


def mean_slice_cost(job: Job) -> int:
    """The measured mean cost of one slice (one base unit before any was measured)."""
    if not job.computed:
        return 1
    return cost_of(job, job.cpu_ms / job.computed, 1, job.gpu_ms / job.computed)


def escrow_balance(job: Job) -> int:
    return bank.escrow_for_job(job.id).balance


def dispatch_limit(job: Job, limit: int) -> int:
    """How many slices of `job` may be handed out now, at most `limit`: all of them for a job
    paid per slice or in estimation (fresh_cap bounds those); for a measured market-value job,
    as many as its escrow can pay for, pausing it when that is none."""
    if not job.cpu_rate or job.estimating:
        return limit
    affordable, held = _affordable(job)
    if affordable < 1 and not held:
        pause(job)
    return max(min(limit, affordable), 0)


def fresh_cap(job: Job) -> int | None:
    """During estimation, how many slices never handed out may still be: the estimation
    slices not yet handed out; None: no cap of its own."""
    if job.cpu_rate and job.estimating:
        return max(estimation_slices(job) - job.issued, 0)
    return None


def _affordable(job: Job) -> tuple[int, int]:
    """(how many more slices the escrow pays for beyond those workers hold, each counted at
    SAFETY times the mean cost, or all that wait once it holds their mean cost; how many they
    hold)."""
    mean = mean_slice_cost(job)
    held = Slice.objects.filter(job=job, status=SliceStatus.LEASED).count()
    balance, waiting = escrow_balance(job), max(job.total - job.computed - held, 0)
    if balance >= (held + waiting) * mean:  # enough for the rest at the mean: hand it all out
        return waiting, held
    return (balance - held * mean * SAFETY) // (mean * SAFETY), held


def estimation_ended(job: Job) -> None:
    """End a market-value job's estimation once its estimation slices have all come back:
    announce the estimate and hand out the rest."""
    if not (job.cpu_rate and job.estimating and job.computed >= estimation_slices(job)):
        return
    job.estimating = False
    Job.objects.filter(pk=job.pk).update(estimating=False)
    notify.announce(notify.event(job.id, "estimated", estimate(job)))
    notify.work_available()


def estimate(job: Job) -> dict[str, Any]:
    """The measured mean CPU time of a slice and what the whole job costs at it."""
    computed = max(job.computed, 1)
    return {
        "cpuSecondsPerSlice": round(job.cpu_ms / 1000 / computed, 3),
        "gpuSecondsPerSlice": round(job.gpu_ms / 1000 / computed, 3),
        "rate": format_credits(job.cpu_rate),
        "gpuRate": format_credits(job.gpu_rate),
        "slices": job.total,
        "cost": format_credits(mean_slice_cost(job) * job.total),
    }


def pause(job: Job) -> None:
    """Pause a market-value job whose escrow cannot pay for another slice (once)."""
    if job.nofunds:
        return
    job.nofunds = True
    Job.objects.filter(pk=job.pk).update(nofunds=True)
    remaining = job.total - job.computed
    notify.announce(
        notify.event(
            job.id,
            "nofunds",
            {
                "escrow": format_credits(escrow_balance(job)),
                "slices": remaining,
                "needed": format_credits(owed_total(job) + mean_slice_cost(job) * remaining),
            },
        ),
        notify.event(job.id, "status", job_status(job)),
    )


def payable(job: Job, payee: Payee, cost: int) -> int:
    """What a batch of a market-value job that cost `cost` is paid now: at most what the escrow
    holds; the rest is owed to `payee`, paid when credits are added (pay_debts)."""
    now = min(cost, escrow_balance(job))
    if cost > now:
        user_id, units = job.owed.get(payee.address, [payee.user_id, 0])
        job.owed[payee.address] = [user_id, units + cost - now]
        Job.objects.filter(pk=job.pk).update(owed=job.owed)
    return now


def owed_total(job: Job) -> int:
    return sum(units for _, units in job.owed.values())


def pay_debts(job: Job, ref: str) -> None:
    """Pay what a market-value job owes its workers out of its escrow, as far as it holds."""
    left = escrow_balance(job)
    payments = []
    for address, (user_id, units) in list(job.owed.items()):
        amount = min(units, left)
        if amount:
            payments.append((Payee(user_id, address), amount))
            left -= amount
        if amount == units:
            del job.owed[address]
        else:
            job.owed[address] = [user_id, units - amount]
    if not payments:
        return
    payouts.pay_workers(
        job,
        dict(payments),
        idempotency_key=f"debts:{job.id}:{ref}",
        memo=f"what job {job.id} owed for results",
    )
    Job.objects.filter(pk=job.pk).update(owed=job.owed)


def funds_left(job: Job) -> None:
    """After a market-value job's payment: pause it when slices wait, no worker holds one, and
    the escrow cannot pay for one more (while workers hold some, their results decide)."""
    if not job.cpu_rate or job.nofunds:
        return
    if job.owed:
        pause(job)
        return
    if job.estimating:
        return
    waiting = (
        job.issued < job.total or Slice.objects.filter(job=job, status=SliceStatus.NEW).exists()
    )
    affordable, held = _affordable(job)
    if waiting and affordable < 1 and not held:
        pause(job)


def resume(job: Job) -> None:
    """A paused job whose escrow now pays for a slice again is handed out again."""
    if job.nofunds and _affordable(job)[0] >= 1:
        job.nofunds = False
        Job.objects.filter(pk=job.pk).update(nofunds=False)
        notify.work_available()
