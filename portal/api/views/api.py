"""The REST API at /api/v0 (dcp-rest compatible): deploy, feed, watch and cancel jobs.

Each endpoint parses its input (Ninja, with the pydantic models of schemas.py), calls one
service or selector, and renders; the scheduler's services tell clients and workers what changed.
"""

from __future__ import annotations

from typing import Annotated, Any

from django.http import HttpRequest
from ninja import Header, NinjaAPI, Path, Query
from ninja.responses import Status

from dcp.protocol.credits import format_credits

from .. import errors, selectors, services
from ..auth import ApiKeyBearer, KeystoreBasic, Principal, authenticate_session
from ..parsing import StrictJsonParser
from ..schemas import (
    AccountOut,
    CancelIn,
    ErrorOut,
    EscrowIn,
    EscrowOut,
    JobCount,
    JobCreated,
    JobIn,
    JobOut,
    JobStatusOut,
    JobSummary,
    ResultsOut,
    SlicesIn,
)
from ..selectors import MAX_SLICE_NUMBER

IDEMPOTENCY_KEY = Header(
    default=None,
    alias="Idempotency-Key",
    pattern=r"^[A-Za-z0-9_-]{8,64}$",
    description="Makes the request safe to repeat: the same key does the work once.",
)

SliceNumber = Annotated[int, Path(ge=1, le=MAX_SLICE_NUMBER, description="From 1.")]

RANGES = Query(
    default=None,
    alias="range",
    description="Slices to return, 'start-end' or 'n', repeatable; all when absent.",
)

api = NinjaAPI(
    title="DCP Portal API",
    version="0",
    description="Deploy and watch compute jobs over HTTP, compatible with dcp-rest. "
    'Amounts of credits are decimal strings; errors are {"error": {"code", "message"}}.',
    urls_namespace="api-v0",
    docs_url=None,
    auth=[ApiKeyBearer(), KeystoreBasic(), authenticate_session],
    parser=StrictJsonParser(),
)
errors.install(api)


def _errors(*statuses: int) -> dict[int, Any]:
    """The documented error responses of an endpoint (every one may also be 400 or 401)."""
    return dict.fromkeys({400, 401, *statuses}, ErrorOut)


def _principal(request: HttpRequest) -> Principal:
    return request.auth  # type: ignore[attr-defined,no-any-return]


@api.post(
    "/job",
    response={201: JobCreated, **_errors(402, 403, 413)},
    tags=["jobs"],
    operation_id="deployJob",
)
def deploy_job(
    request: HttpRequest, body: JobIn, idempotency_key: str | None = IDEMPOTENCY_KEY
) -> Status[dict[str, str]]:
    """Deploy a job: pays `slicePaymentOffer x slices` into its escrow before anything runs.

    Every REST job is open: add slices later with POST /job/{jobId}/slices, then close it.
    """
    job, _ = services.deploy_job(
        request=request,
        principal=_principal(request),
        body=body,
        idempotency_key=idempotency_key,
    )
    return Status(201, {"jobId": job.id})


@api.post(
    "/job/{job_id}/slices",
    response={201: JobStatusOut, **_errors(402, 403, 404, 409, 413)},
    tags=["jobs"],
    operation_id="addSlices",
)
def add_slices(
    request: HttpRequest, job_id: str, body: SlicesIn, idempotency_key: str | None = IDEMPOTENCY_KEY
) -> Status[dict[str, Any]]:
    """Append input values to an open job, paid at the job's offer from the job's account."""
    job, _ = services.add_slices(
        principal=_principal(request),
        job_id=job_id,
        values=body.values,
        idempotency_key=idempotency_key,
    )
    return Status(201, selectors.status_of(job))


@api.post(
    "/job/{job_id}/escrow",
    response={200: EscrowOut, **_errors(402, 403, 404, 409)},
    tags=["jobs"],
    operation_id="addEscrow",
)
def add_escrow(
    request: HttpRequest, job_id: str, body: EscrowIn, idempotency_key: str | None = IDEMPOTENCY_KEY
) -> dict[str, Any]:
    """Add credits to a MARKET_VALUE job's escrow from the job's account: it pays per
    CPU-second out of it, and a job paused when it ran out (status `paused`) resumes."""
    job, held = services.add_escrow(
        principal=_principal(request),
        job_id=job_id,
        amount=body.amount,
        idempotency_key=idempotency_key,
    )
    return {"jobId": job.id, "escrow": format_credits(held)}


@api.post(
    "/job/{job_id}/close",
    response={200: JobStatusOut, **_errors(404)},
    tags=["jobs"],
    operation_id="closeJob",
)
def close_job(request: HttpRequest, job_id: str) -> dict[str, Any]:
    """No more slices will be added: the job completes when every slice has a result."""
    job, _ = services.close_job(principal=_principal(request), job_id=job_id)
    return selectors.status_of(job)


@api.get(
    "/job/{job_id}/result",
    response={200: ResultsOut, **_errors(404)},
    tags=["results"],
    operation_id="jobResults",
)
def job_results(
    request: HttpRequest,
    job_id: str,
    ranges: list[str] | None = RANGES,
) -> dict[str, Any]:
    """Stored results in slice order, at most 10,000 a response (follow `nextRanges`)."""
    job = selectors.own_job(_principal(request), job_id)
    return selectors.results_of(job, selectors.parse_ranges(ranges) if ranges else None)


@api.get(
    "/job/{job_id}/result/{slice_number}",
    response={200: ResultsOut, **_errors(404)},
    tags=["results"],
    operation_id="sliceResult",
)
def slice_result(request: HttpRequest, job_id: str, slice_number: SliceNumber) -> dict[str, Any]:
    """The result of one slice, in the shape of .../result (no result yet: `results` is empty)."""
    job = selectors.own_job(_principal(request), job_id)
    return selectors.results_of(job, [(slice_number, slice_number)])


@api.get(
    "/job/{job_id}/status",
    response={200: JobStatusOut, **_errors(404)},
    tags=["jobs"],
    operation_id="jobStatus",
)
def job_status(request: HttpRequest, job_id: str) -> dict[str, Any]:
    """The job's progress: slices total, handed out, computed, held by workers now."""
    return selectors.status_of(selectors.own_job(_principal(request), job_id))


@api.get(
    "/job/{job_id}", response={200: JobOut, **_errors(404)}, tags=["jobs"], operation_id="getJob"
)
def job_details(request: HttpRequest, job_id: str) -> dict[str, Any]:
    """The job: its progress, offer, paying account, public metadata and requirements."""
    return selectors.details_of(selectors.own_job(_principal(request), job_id))


@api.delete(
    "/job/{job_id}",
    response={204: None, **_errors(404, 409)},
    tags=["jobs"],
    operation_id="cancelJob",
)
def cancel_job(request: HttpRequest, job_id: str, body: CancelIn | None = None) -> Status[None]:
    """Cancel a running job: workers drop its slices and the unspent escrow is refunded."""
    reason = body.reason if body is not None else ""
    services.cancel_job(principal=_principal(request), job_id=job_id, reason=reason)
    return Status(204, None)


@api.get(
    "/jobs", response={200: list[JobSummary], **_errors()}, tags=["jobs"], operation_id="listJobs"
)
def list_jobs(request: HttpRequest) -> list[dict[str, Any]]:
    """The jobs this identity deployed, newest first (the 200 most recent)."""
    return selectors.jobs_of(_principal(request))


@api.get(
    "/jobs/count", response={200: JobCount, **_errors()}, tags=["jobs"], operation_id="countJobs"
)
def count_jobs(request: HttpRequest) -> dict[str, int]:
    """How many jobs this identity has deployed."""
    return {"jobCount": selectors.job_count(_principal(request))}


@api.get(
    "/accounts",
    response={200: list[AccountOut], **_errors()},
    tags=["accounts"],
    operation_id="listAccounts",
)
def list_accounts(request: HttpRequest) -> list[dict[str, str]]:
    """Your account keys with their balances (decimal strings of credits)."""
    return selectors.accounts_of(_principal(request).user)
