"""The charts' data: what the signed-in user's accounts were paid for results over time (the
Worker tab) and what one of their jobs paid (the Jobs tab), as JSON.

A job's history answers 404 to anyone but its owner, whatever its id.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from dcp.protocol.credits import format_credits
from portal.scheduler import selectors
from portal.scheduler.models import Job, JobStatus

from .views import AuthedRequest

NO_STORE = {"Cache-Control": "no-store"}
WORKER_EMPTY = {
    "day": "No results paid into your accounts in the last 24 hours yet.",
    "month": "No results paid into your accounts in the last 30 days yet.",
}
JOB_EMPTY: dict[str, str] = {
    JobStatus.RUNNING: "No results paid yet: the chart fills in as workers return results.",
    JobStatus.FINISHED: "No results were paid for this job.",
    JobStatus.CANCELLED: "No results were paid for this job before it was cancelled.",
}


@login_required
@require_GET
def worker_history(request: AuthedRequest) -> JsonResponse:
    """`?period=day` (the last 24 hours by the hour, the default) or `month` (30 days by day)."""
    period = request.GET.get("period", "day")
    if period not in selectors.WORKER_PERIODS:
        names = " or ".join(selectors.WORKER_PERIODS)
        message = f"period must be {names}, not {period!r}"
        return JsonResponse({"error": message}, status=400, headers=NO_STORE)
    history = selectors.worker_history(request.user, period)
    document = {"period": period, **_document(history, empty=WORKER_EMPTY[period])}
    return JsonResponse(document, headers=NO_STORE)


@login_required
@require_GET
def job_history(request: AuthedRequest, job_id: str) -> JsonResponse:
    job = get_object_or_404(Job, pk=job_id, owner=request.user)
    history = selectors.job_history(job)
    head = {
        "job": job.id,
        "name": job.name,
        "status": job.status,
        "total": job.total,
        "created": job.created_at.isoformat(),
    }
    document = {**head, **_document(history, empty=JOB_EMPTY.get(job.status, ""))}
    return JsonResponse(document, headers=NO_STORE)


def _document(history: selectors.History, *, empty: str) -> dict[str, Any]:
    """The buckets as chart.js draws them; `message` says why the chart is blank, if it is."""
    nothing = not (history.credits or history.results)
    return {
        "bucket_seconds": int(history.width.total_seconds()),
        "start": history.buckets[0].start.isoformat(),
        "end": history.end.isoformat(),
        "buckets": [
            {
                "start": bucket.start.isoformat(),
                "credits": format_credits(bucket.credits),
                "results": bucket.results,
            }
            for bucket in history.buckets
        ],
        "total": {"credits": format_credits(history.credits), "results": history.results},
        "empty": nothing,
        "message": empty if nothing else "",
    }
