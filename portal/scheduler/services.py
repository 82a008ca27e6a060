"""Every write of the scheduler: deploy, claim, results, give-backs, cancel and finish.

The database is the source of truth: a slice is handed to one worker at a time by an atomic
claim, a result is accepted only from the worker that holds the slice's lease, and the payment
for a batch of results is one ledger transaction in the same database transaction, so a crash
at any point either keeps everything or nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from portal.bank import services as bank
from portal.users.models import User

from .models import Job, JobStatus, Slice, SliceInput, SliceStatus, WorkerTally

MAX_ERRORS_PER_SLICE = 2


class SchedulerError(Exception):
    """A refused scheduler request; `code` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class JobSpec:
    """What a client deploys, already validated by the protocol schema."""

    ref: str
    language: str
    source: str
    args: list[Any]
    input_kind: str
    values: list[Any] | None = None
    range_start: int | float | None = None
    range_end: int | float | None = None
    range_step: int | float | None = None
    offer: int = 0
    public: dict[str, Any] = field(default_factory=dict)


@dataclass
class Task:
    """Slices of one job handed to one worker."""

    job: Job
    slices: list[tuple[int, Any]]


@dataclass
class BatchOutcome:
    """What one result batch changed, for the ack and the job's events."""

    job_id: str
    accepted: list[tuple[int, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    earned: int = 0
    status: dict[str, Any] | None = None
    completed: bool = False
    cancelled: tuple[str, str] | None = None


# --- deploy -----------------------------------------------------------------------------------


def count_range_slices(start: float, end: float, step: float) -> int:
    """Slices of DCP's inclusive range: values start, start+step, ... not past end."""
    if step == 0:
        raise SchedulerError("EINVALID", "a range's step cannot be 0")
    span = (Decimal(str(end)) - Decimal(str(start))) / Decimal(str(step))
    return max(int(span.to_integral_value(rounding="ROUND_FLOOR")) + 1, 0)


def slice_count(spec: JobSpec) -> int:
    if spec.input_kind == "range":
        assert spec.range_start is not None and spec.range_end is not None
        return count_range_slices(spec.range_start, spec.range_end, spec.range_step or 1)
    return len(spec.values or [])


@transaction.atomic
def deploy_job(*, owner: User, identity: str, payer: str, spec: JobSpec) -> tuple[Job, bool]:
    """Create a job and move `offer x slices` into its escrow; (job, False) when `ref` exists."""
    existing = Job.objects.filter(ref=spec.ref).first()
    if existing is not None:
        if existing.identity != identity:
            raise SchedulerError("EINVALID", "this job reference belongs to another identity")
        return existing, False
    if owner.first_dev_since is None:
        raise SchedulerError(
            "ENOTFIRSTDEV", "join First Devs on the portal's First Devs tab to deploy jobs"
        )
    total = slice_count(spec)
    if total < 1:
        raise SchedulerError("EINVALID", "the job has no slices: its input is empty")
    if total > settings.MAX_SLICES_PER_JOB:
        raise SchedulerError(
            "EINVALID", f"{total} slices is more than {settings.MAX_SLICES_PER_JOB} per job"
        )
    job = Job.objects.create(
        id=uuid.uuid4().hex,
        ref=spec.ref,
        owner=owner,
        identity=identity,
        payer=payer,
        language=spec.language,
        source=spec.source,
        args=spec.args,
        input_kind=spec.input_kind,
        range_start=spec.range_start,
        range_step=spec.range_step,
        total=total,
        offer=spec.offer,
        public=spec.public,
    )
    if spec.input_kind == "values":
        SliceInput.objects.bulk_create(
            (SliceInput(job=job, number=n, datum=v) for n, v in enumerate(spec.values or [], 1)),
            batch_size=2000,
        )
    if spec.offer * total:
        try:
            bank.open_escrow(
                job_ref=job.id,
                payer=bank.account_for_address(payer),
                amount=spec.offer * total,
                idempotency_key=f"escrow:{job.id}",
            )
        except bank.InsufficientFunds:
            raise SchedulerError(
                "ENOFUNDS", f"account {payer} holds too few credits to pay for {total} slices"
            ) from None
    return job, True


# --- dispatch ---------------------------------------------------------------------------------


def requeue_lapsed_leases(*, now: datetime | None = None) -> int:
    """Slices whose lease ran out go back to the queue; returns how many."""
    return Slice.objects.filter(
        status=SliceStatus.LEASED, lease_expires__lt=now or timezone.now()
    ).update(status=SliceStatus.NEW, worker="", lease_expires=None)


def return_slices(
    *, worker: str, job_id: str | None = None, numbers: list[int] | None = None
) -> int:
    """Give a worker's leased slices back to the queue (Stop, disconnect)."""
    rows = Slice.objects.filter(worker=worker, status=SliceStatus.LEASED)
    if job_id is not None:
        rows = rows.filter(job_id=job_id)
    if numbers is not None:
        rows = rows.filter(number__in=numbers)
    return rows.update(status=SliceStatus.NEW, worker="", lease_expires=None)


def extend_leases(*, worker: str, job_id: str, numbers: list[int]) -> int:
    deadline = timezone.now() + timedelta(seconds=settings.SLICE_LEASE_SECONDS)
    return Slice.objects.filter(
        worker=worker, job_id=job_id, number__in=numbers, status=SliceStatus.LEASED
    ).update(lease_expires=deadline)


def jobs_with_work() -> list[str]:
    """Running jobs that have slices to hand out, oldest first."""
    returned = Slice.objects.filter(job=OuterRef("pk"), status=SliceStatus.NEW)
    rows = (
        Job.objects.filter(status=JobStatus.RUNNING)
        .filter(Q(issued__lt=F("total")) | Exists(returned))
        .order_by("created_at")
        .values_list("id", flat=True)
    )
    return list(rows[:8])


def claim_slices(*, worker: str, limit: int) -> Task | None:
    """Lease up to `limit` slices of the oldest job with work to `worker`, atomically."""
    for job_id in jobs_with_work():
        task = _claim_from_job(job_id=job_id, worker=worker, limit=limit)
        if task is not None:
            return task
    return None


@transaction.atomic
def _claim_from_job(*, job_id: str, worker: str, limit: int) -> Task | None:
    deadline = timezone.now() + timedelta(seconds=settings.SLICE_LEASE_SECONDS)
    numbers = _claim_returned(job_id=job_id, worker=worker, limit=limit, deadline=deadline)
    job = Job.objects.select_for_update().get(pk=job_id)
    if job.status != JobStatus.RUNNING:
        return None
    fresh = min(limit - len(numbers), job.total - job.issued)
    if fresh > 0:
        first = job.issued + 1
        Slice.objects.bulk_create(
            Slice(
                job=job,
                number=n,
                status=SliceStatus.LEASED,
                worker=worker,
                lease_expires=deadline,
                attempts=1,
            )
            for n in range(first, first + fresh)
        )
        Job.objects.filter(pk=job.pk).update(issued=F("issued") + fresh)
        job.issued += fresh
        numbers.extend(range(first, first + fresh))
    if not numbers:
        return None
    return Task(job=job, slices=list(zip(numbers, _data_of(job, numbers), strict=True)))


def _claim_returned(*, job_id: str, worker: str, limit: int, deadline: datetime) -> list[int]:
    table = Slice._meta.db_table
    skip_locked = " FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
    sql = (
        f"UPDATE {table} SET status = %s, worker = %s, lease_expires = %s, "  # noqa: S608
        f"attempts = attempts + 1 WHERE id IN (SELECT id FROM {table} "
        f"WHERE job_id = %s AND status = %s ORDER BY number LIMIT %s{skip_locked}) "
        "RETURNING number"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [SliceStatus.LEASED, worker, deadline, job_id, SliceStatus.NEW, limit])
        return sorted(row[0] for row in cursor.fetchall())


def _data_of(job: Job, numbers: list[int]) -> list[Any]:
    if job.input_kind == "range":
        return [job.range_datum(n) for n in numbers]
    data = dict(
        SliceInput.objects.filter(job=job, number__in=numbers).values_list("number", "datum")
    )
    return [data[n] for n in numbers]


# --- results ----------------------------------------------------------------------------------


@transaction.atomic
def record_results(
    *,
    worker: str,
    payee: User,
    payee_address: str,
    job_id: str,
    results: list[tuple[int, Any]],
    errors: list[dict[str, Any]],
    batch_key: str,
) -> BatchOutcome:
    """Store a worker's batch: results of slices it holds are kept and paid, others ignored."""
    outcome = BatchOutcome(job_id=job_id)
    job = Job.objects.select_for_update().filter(pk=job_id).first()
    if job is None or job.status != JobStatus.RUNNING:
        return outcome
    held = dict(
        Slice.objects.filter(
            job=job,
            worker=worker,
            status=SliceStatus.LEASED,
            number__in=[n for n, _ in results] + [e["slice"] for e in errors],
        ).values_list("number", "id")
    )
    _store_results(job, held, results, outcome)
    _store_errors(job, held, errors, outcome)
    if outcome.accepted:
        _pay(job, payee, payee_address, len(outcome.accepted), batch_key, outcome)
    if outcome.cancelled:
        _close_job(
            job, status=JobStatus.CANCELLED, code=outcome.cancelled[0], reason=outcome.cancelled[1]
        )
    elif job.computed == job.total:
        _close_job(job, status=JobStatus.FINISHED)
        outcome.completed = True
    outcome.status = job_status(job)
    return outcome


def _store_results(
    job: Job, held: dict[int, int], results: list[tuple[int, Any]], outcome: BatchOutcome
) -> None:
    kept = {n: value for n, value in results if n in held}
    Slice.objects.bulk_update(
        [
            Slice(id=held[n], status=SliceStatus.DONE, result=value, worker="", lease_expires=None)
            for n, value in kept.items()
        ],
        ["status", "result", "worker", "lease_expires"],
        batch_size=500,
    )
    outcome.accepted = sorted(kept.items())
    job.computed += len(kept)


def _store_errors(
    job: Job, held: dict[int, int], errors: list[dict[str, Any]], outcome: BatchOutcome
) -> None:
    for error in errors:
        number = error["slice"]
        if number not in held:
            continue
        row = Slice.objects.get(pk=held[number])
        row.errors += 1
        row.error = {k: error.get(k, "") for k in ("name", "message", "traceback")}
        if row.errors >= MAX_ERRORS_PER_SLICE:
            row.status = SliceStatus.FAILED
            job.failed += 1
            why = f"{row.error['name']}: {row.error['message']}"
            outcome.cancelled = (
                "ETOOMANYERRORS",
                f"slice {number} failed {row.errors} times: {why}",
            )
        else:
            row.status = SliceStatus.NEW  # one retry, possibly on another worker
        row.worker, row.lease_expires = "", None
        row.save(update_fields=["errors", "error", "status", "worker", "lease_expires"])
        outcome.errors.append({"slice": number, **row.error})


def _pay(
    job: Job, payee: User, payee_address: str, count: int, batch_key: str, outcome: BatchOutcome
) -> None:
    amount = job.offer * count
    if amount:
        bank.pay_from_escrow(
            escrow=bank.escrow_for_job(job.id),
            payments=[(bank.account_for_address(payee_address), amount)],
            idempotency_key=batch_key,
            memo=f"{count} slices of job {job.id}",
        )
    job.paid += amount
    outcome.earned = amount
    Job.objects.filter(pk=job.pk).update(computed=F("computed") + count, paid=F("paid") + amount)
    tally, _ = WorkerTally.objects.get_or_create(user=payee)
    WorkerTally.objects.filter(pk=tally.pk).update(
        slices=F("slices") + count, earned=F("earned") + amount
    )


# --- cancel and finish ------------------------------------------------------------------------


@transaction.atomic
def cancel_job(*, job_id: str, identity: str, code: str = "ECANCELLED", reason: str = "") -> Job:
    """Stop a job's dispatch and refund its escrow; only the identity that deployed it may."""
    job = Job.objects.select_for_update().filter(pk=job_id, identity=identity).first()
    if job is None:
        raise SchedulerError("ENOJOB", f"no job {job_id} for this identity")
    if job.status == JobStatus.RUNNING:
        _close_job(
            job, status=JobStatus.CANCELLED, code=code, reason=reason or "cancelled by its owner"
        )
    return job


def _close_job(job: Job, *, status: str, code: str = "", reason: str = "") -> None:
    job.status = status
    job.cancel_code, job.cancel_reason = code, reason[:200]
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "cancel_code", "cancel_reason", "finished_at", "failed"])
    Slice.objects.filter(job=job, status=SliceStatus.LEASED).update(
        status=SliceStatus.NEW, worker="", lease_expires=None
    )
    bank.refund_escrow(
        escrow=bank.escrow_for_job(job.id),
        target=bank.account_for_address(job.payer),
        idempotency_key=f"refund:{job.id}",
    )


def job_status(job: Job) -> dict[str, Any]:
    return {
        "total": job.total,
        "distributed": job.issued,
        "computed": job.computed,
        "failed": job.failed,
        "status": job.status,
    }
