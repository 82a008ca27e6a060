"""The Jobs tab: a First Dev's jobs with live progress, their results file, and Cancel.

Every view filters on `Job.owner`, so another user's job answers 404 whatever its id.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import batched
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Q
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from dcp.protocol.credits import format_credits
from portal.bank.selectors import balance_of
from portal.bank.services import ESCROW_PREFIX
from portal.scheduler.errors import SchedulerError
from portal.scheduler.models import Job, JobStatus, Slice, SliceStatus
from portal.scheduler.selectors import gpu_seconds
from portal.scheduler.selectors import stage as stage_of
from portal.scheduler.services import cancel_job_of_owner
from portal.scheduler.verification import verification_status

from .views import AuthedRequest

JOBS_SHOWN = 200
RESULTS_CHUNK = 2000
MAX_POLLED_JOBS = 100
CANCEL_REASON = "cancelled by its owner on the Jobs tab"


@dataclass(frozen=True)
class JobRow:
    """One line of the Jobs table, ready to render."""

    id: str
    name: str
    description: str
    link: str
    status: str
    total: int
    computed: int
    paid: str
    escrow: str
    created_at: datetime
    verification: str = ""  # a verified job's votes, in words
    pricing: str = ""  # a market-value job's rate and stage, in words
    gpu_time: str = ""  # the GPU time its results used, e.g. "1.23 s"; "" when none

    @property
    def running(self) -> bool:
        return self.status == JobStatus.RUNNING


def escrow_held(job: Job) -> int:
    """Credits still held for a running job's unpaid slices; nothing once it has ended."""
    if job.status != JobStatus.RUNNING:
        return 0
    if job.cpu_rate:  # a budget, not a price per slice: what it holds now
        return balance_of(f"{ESCROW_PREFIX}{job.id}")
    return max(0, job.offer * job.total * job.replicas - job.paid)


def pricing_text(job: Job) -> str:
    """A market-value job's rate and stage, e.g. "0.002 credits per CPU-second · paused: out
    of funds"; "" for a job paid per slice."""
    if not job.cpu_rate:
        return ""
    text = f"market value: {format_credits(job.cpu_rate)} credits per CPU-second"
    stage = stage_of(job)
    if stage == "estimation":
        return f"{text} · estimating its cost"
    if stage == "paused":
        return f"{text} · paused: out of funds"
    return text


def _public_link(job: Job) -> str:
    # The deploy schema only lets http(s) links through; check again before making an href.
    link = str(job.public.get("link") or "")
    return link if link.startswith(("https://", "http://")) else ""


def _row(job: Job) -> JobRow:
    return JobRow(
        id=job.id,
        name=job.name,
        description=str(job.public.get("description") or ""),
        link=_public_link(job),
        status=job.status,
        total=job.total,
        computed=job.computed,
        paid=format_credits(job.paid),
        escrow=format_credits(escrow_held(job)),
        created_at=job.created_at,
        verification=verification_text(job),
        pricing=pricing_text(job),
        gpu_time=gpu_time_text(job),
    )


def gpu_time_text(job: Job) -> str:
    """The GPU time the job's results used, e.g. "1.23 s", or "" when they used none."""
    return f"{gpu_seconds(job):,.2f} s" if job.gpu_ms > 0 else ""


def verification_text(job: Job) -> str:
    """A verified job's votes so far, e.g. "verified by 2 users · 1 disputed · 3 rejected"."""
    if not job.verify:
        return ""
    counts = verification_status(job)
    parts = [f"verified by {counts['quorum']} users"]
    parts += [f"{counts[name]} {name}" for name in ("pending", "disputed", "rejected")]
    return " · ".join(parts)


def _progress(job: Job) -> dict[str, Any]:
    """What jobs.js needs to redraw one row."""
    progress = {
        "id": job.id,
        "status": job.status,
        "total": job.total,
        "computed": job.computed,
        "paid": format_credits(job.paid),
        "escrow": format_credits(escrow_held(job)),
    }
    if job.verify:
        progress["verification"] = verification_text(job)
    if job.cpu_rate:
        progress["pricing"] = pricing_text(job)
    if job.gpu_ms > 0:
        progress["gpu_time"] = gpu_time_text(job)
    return progress


@login_required
@require_GET
def jobs(request: AuthedRequest) -> HttpResponse:
    rows = Job.objects.filter(owner=request.user).order_by("-created_at")[: JOBS_SHOWN + 1]
    shown = [_row(job) for job in rows]
    context = {
        "tab": "jobs",
        "jobs": shown[:JOBS_SHOWN],
        "more": len(shown) > JOBS_SHOWN,
        "jobs_shown": JOBS_SHOWN,
    }
    return render(request, "web/jobs.html", context)


@login_required
@require_GET
def jobs_status(request: AuthedRequest) -> JsonResponse:
    """The user's running jobs, plus any asked for by `?job=<id>` (to see how they ended)."""
    asked = request.GET.getlist("job")[:MAX_POLLED_JOBS]
    rows = Job.objects.filter(owner=request.user).filter(
        Q(status=JobStatus.RUNNING) | Q(pk__in=asked)
    )
    jobs = [_progress(job) for job in rows.order_by("-created_at")[:JOBS_SHOWN]]
    return JsonResponse({"jobs": jobs}, headers={"Cache-Control": "no-store"})


@login_required
@require_POST
def cancel(request: AuthedRequest, job_id: str) -> HttpResponse:
    """Cancel a job of this user; the service tells its client and the workers."""
    try:
        job, cancelled = cancel_job_of_owner(
            job_id=job_id, owner=request.user, reason=CANCEL_REASON
        )
    except SchedulerError:
        return HttpResponse(status=404)
    if cancelled:
        messages.success(request, f"Job {job.name} cancelled; unspent credits refunded.")
    else:
        messages.info(request, f"Job {job.name} had already ended: {job.status}.")
    return redirect("jobs")


@login_required
@require_GET
def results(request: AuthedRequest, job_id: str) -> StreamingHttpResponse:
    job = get_object_or_404(Job, pk=job_id, owner=request.user)
    parts = results_document(job)
    response = StreamingHttpResponse(
        pulled_in_thread(parts) if isinstance(request, ASGIRequest) else parts,
        content_type="application/json",
    )
    response["Content-Disposition"] = f'attachment; filename="{job.id}-results.json"'
    response["Cache-Control"] = "no-store"
    return response


def results_document(job: Job) -> Iterator[str]:
    """The results file in parts of RESULTS_CHUNK slices, in slice order, so memory stays flat."""
    head = {
        "job": job.id,
        "name": job.name,
        "status": job.status,
        "total": job.total,
        "computed": job.computed,
    }
    yield json.dumps(head)[:-1] + ', "results": ['  # the head without its closing brace
    rows = (
        Slice.objects.filter(job=job, status=SliceStatus.DONE)
        .order_by("number")
        .values_list("number", "result")
        .iterator(chunk_size=RESULTS_CHUNK)
    )
    separator = ""
    for chunk in batched(rows, RESULTS_CHUNK):
        yield separator + ", ".join(json.dumps({"slice": n, "value": v}) for n, v in chunk)
        separator = ", "
    yield "]}\n"


async def pulled_in_thread(parts: Iterator[str]) -> AsyncIterator[str]:
    """Under daphne, take each part in the request's sync thread: given a sync iterator,
    Django would read all of it into memory before sending the first byte."""
    take = sync_to_async(lambda: next(parts, None))
    while (part := await take()) is not None:
        yield part
