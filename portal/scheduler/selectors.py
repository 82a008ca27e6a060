"""Reads of jobs and slices used by the consumers and pages."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.utils import timezone

from portal.users.models import User
from portal.wallet.models import Key, KeyKind

from .models import Job, JobStatus, Slice, SliceStatus, WorkerTally


def identity_owner(address: str) -> User | None:
    key = Key.objects.filter(kind=KeyKind.IDENTITY, address=address).select_related("user").first()
    return key.user if key is not None else None


def job_of_identity(job_id: str, identity: str) -> Job | None:
    return Job.objects.filter(pk=job_id, identity=identity).first()


def results_between(job: Job, start: int, end: int) -> list[list[Any]]:
    rows = (
        Slice.objects.filter(job=job, status=SliceStatus.DONE, number__gte=start, number__lte=end)
        .order_by("number")
        .values_list("number", "result")
    )
    return [[number, result] for number, result in rows]


def final_events(job: Job) -> list[tuple[str, dict[str, Any]]]:
    """The closing event of a job that has ended, for a client that subscribes late."""
    if job.status == JobStatus.FINISHED:
        return [("complete", {"total": job.total})]
    if job.status == JobStatus.CANCELLED:
        return [("cancel", {"code": job.cancel_code, "reason": job.cancel_reason})]
    return []


def payee_address(user: User) -> str:
    """The account a user's worker tabs are paid into: the default account key."""
    from portal.wallet.services import ensure_default_account

    return ensure_default_account(user=user).address


def worker_tally(user: User) -> tuple[int, int]:
    """(slices computed, base units earned) by all of this user's worker tabs."""
    tally = WorkerTally.objects.filter(user=user).first()
    return (tally.slices, tally.earned) if tally else (0, 0)


def jobs_of_identity(identity: str, limit: int = 200) -> list[dict[str, Any]]:
    """The identity's jobs, newest first, as the `jobs` reply lists them."""
    rows = Job.objects.filter(identity=identity).order_by("-created_at")[:limit]
    return [
        {
            "job": job.id,
            "name": job.name,
            "status": job.status,
            "total": job.total,
            "computed": job.computed,
            "created": job.created_at.isoformat(),
        }
        for job in rows
    ]


def results_in_ranges(job: Job, ranges: list[tuple[int, int]], limit: int) -> list[tuple[int, Any]]:
    """Stored results of the job's slices within `ranges` (inclusive), in slice order."""
    if not ranges:
        return []
    within = Q()
    for start, end in ranges:
        within |= Q(number__gte=start, number__lte=end)
    rows = (
        Slice.objects.filter(job=job, status=SliceStatus.DONE)
        .filter(within)
        .order_by("number")
        .values_list("number", "result")[:limit]
    )
    return list(rows)


def active_slice_count(job: Job) -> int:
    """How many of the job's slices a worker holds right now (an unexpired lease)."""
    return Slice.objects.filter(
        job=job, status=SliceStatus.LEASED, lease_expires__gte=timezone.now()
    ).count()
