"""Reads of the REST API: the caller's jobs, their results in pages, and accounts."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from django.conf import settings

from dcp.protocol.credits import format_credits
from dcp.protocol.ids import JOB_ID_FORM
from portal.bank.selectors import balances_of
from portal.scheduler import selectors as scheduler
from portal.scheduler.errors import SchedulerError
from portal.scheduler.models import Job, JobStatus
from portal.users.models import User
from portal.wallet.models import Key, KeyKind

from .errors import ApiError

if TYPE_CHECKING:
    from .auth import Principal

RANGE = re.compile(r"(\d{1,10})(?:-(\d{1,10}))?")
MAX_RANGES = 100
MAX_SLICE_NUMBER = 10**10 - 1  # the most a range may name: ten digits


def own_job(principal: Principal, job_id: str) -> Job:
    """The caller's job; ENOJOB for any other id, whoever deployed it."""
    job = (
        scheduler.job_of_identity(job_id, principal.identity)
        if JOB_ID_FORM.fullmatch(job_id)
        else None
    )
    if job is None:
        raise SchedulerError("ENOJOB", f"no job {job_id[:40]} for this identity")
    return job


def status_of(job: Job) -> dict[str, Any]:
    """The job's progress in the API's words."""
    return _progress(job, scheduler.job_status(job))


def _progress(job: Job, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "jobId": job.id,
        "status": status["status"],
        "open": status["open"],
        "totalSlices": status["total"],
        "distributedSlices": status["distributed"],
        "completedSlices": status["computed"],
        "activeSlices": scheduler.active_slice_count(job),
        "failedSlices": status["failed"],
        "totalGPUTime": status["totalGPUTime"],
        "waiting": status.get("waiting"),
        "verification": status.get("verification"),
    }


def details_of(job: Job) -> dict[str, Any]:
    """The job as GET /job/{id} shows it: its status in dcp-rest's words (dcp_status)."""
    status = scheduler.job_status(job)
    progress = _progress(job, status)
    return {
        **progress,
        "status": dcp_status(progress),
        "totalCPUTime": status["totalCPUTime"],
        "name": job.name,
        "language": job.language,
        "slicePaymentOffer": format_credits(job.offer),
        "account": job.payer,
        "public": job.public,
        "requirements": job.requirements,
        "created": job.created_at,
        "finished": job.finished_at,
        "cancelCode": job.cancel_code or None,
        "cancelReason": job.cancel_reason or None,
    }


def dcp_status(progress: dict[str, Any]) -> str:
    """dcp-rest's status word: completed once every slice added so far has a result (its jobs
    are all open, so DCP's own word stays running), cancelled, else running."""
    if progress["status"] == JobStatus.CANCELLED:
        return "cancelled"
    if progress["completedSlices"] == progress["totalSlices"]:
        return "completed"
    return "running"


def jobs_of(principal: Principal) -> list[dict[str, Any]]:
    """The caller's jobs, newest first (the 200 most recent)."""
    return [
        {
            "jobId": row["job"],
            "name": row["name"],
            "status": row["status"],
            "totalSlices": row["total"],
            "completedSlices": row["computed"],
            "created": row["created"],
        }
        for row in scheduler.jobs_of_identity(principal.identity)
    ]


def job_count(principal: Principal) -> int:
    return Job.objects.filter(identity=principal.identity).count()


def accounts_of(user: User) -> list[dict[str, str]]:
    keys = list(Key.objects.filter(user=user, kind=KeyKind.ACCOUNT))
    balances = balances_of([key.address for key in keys])
    return [
        {
            "name": key.label,
            "address": key.address,
            "balance": format_credits(balances[key.address]),
        }
        for key in keys
    ]


# --- results ------------------------------------------------------------------------------


def parse_ranges(texts: list[str]) -> list[tuple[int, int]]:
    """`["1-10", "33"]` as inclusive (start, end) pairs; EINVALID for anything else."""
    if len(texts) > MAX_RANGES:
        raise ApiError(400, "EINVALID", f"range: at most {MAX_RANGES} ranges per request")
    ranges = []
    for text in texts:
        match = RANGE.fullmatch(text.strip())
        if match is None:
            raise ApiError(400, "EINVALID", f"range: {text[:40]!r} is not 'start-end' or 'n'")
        start = int(match.group(1))
        end = int(match.group(2) or start)
        if start < 1 or end < start:
            raise ApiError(400, "EINVALID", f"range: {text[:40]!r} must go from 1 upwards")
        ranges.append((start, end))
    return ranges


def _merged(ranges: list[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    """Sorted, non-overlapping ranges cut at the job's last slice."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        end = min(end, total)
        if start > end:
            continue
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def results_of(job: Job, ranges: list[tuple[int, int]] | None) -> dict[str, Any]:
    """A page of the job's stored results within `ranges` (all when None), with its progress."""
    page = results_page(job, ranges)
    status = status_of(job)
    return {
        "results": [{"sliceNumber": n, "value": value} for n, value in page.results],
        "totalSlices": status["totalSlices"],
        "completedSlices": status["completedSlices"],
        "activeSlices": status["activeSlices"],
        "nextRanges": [f"{start}-{end}" for start, end in page.next_ranges],
    }


def results_page(job: Job, ranges: list[tuple[int, int]] | None) -> scheduler.ResultsPage:
    """Stored results within `ranges` (all slices when None): a page of at most
    MAX_RESULTS_PER_FETCH results and about MAX_RESULTS_PAGE_BYTES of JSON."""
    wanted = _merged(ranges if ranges else [(1, job.total)], job.total)
    return scheduler.results_page(
        job, wanted, limit=settings.MAX_RESULTS_PER_FETCH, budget=settings.MAX_RESULTS_PAGE_BYTES
    )
