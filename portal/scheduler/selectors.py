"""Reads of jobs and slices used by the services, the consumers, the REST API and the pages."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from dcp.protocol.credits import format_credits, to_units
from dcp.protocol.messages import EventName, JobInfo, Work
from portal.bank.selectors import (
    PaymentBucket,
    bucket_start,
    bucket_width,
    payments_into,
    payments_out_of,
)
from portal.bank.services import ESCROW_PREFIX
from portal.users.models import User
from portal.wallet.models import Key, KeyKind

from . import verification
from .errors import SchedulerError
from .models import (
    ComputeGroup,
    Job,
    JobStatus,
    Slice,
    SliceInput,
    SliceStatus,
    WorkerConnection,
    WorkerTally,
)
from .sizing import SLICE_OVERHEAD_BYTES, json_bytes


def identity_owner(address: str) -> User | None:
    """The portal user whose identity key has this address."""
    key = Key.objects.filter(kind=KeyKind.IDENTITY, address=address).select_related("user").first()
    return key.user if key is not None else None


def owner_of_leased_job(*, worker: str, user_id: int, job_id: str) -> User | None:
    """The owner of a running job while the worker connection `worker` (of the user
    `user_id`) holds a live lease on one of its slices; None otherwise (the store takes a
    worker's upload for that job, and only then)."""
    if not WorkerConnection.objects.filter(id=worker, user_id=user_id).exists():
        return None
    leased = Slice.objects.filter(
        job_id=job_id,
        worker=worker,
        status=SliceStatus.LEASED,
        lease_expires__gte=timezone.now(),
    )
    job = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).select_related("owner").first()
    return job.owner if job is not None and leased.exists() else None


def job_of_identity(job_id: str, identity: str) -> Job | None:
    """The job, if this identity deployed it."""
    return Job.objects.filter(pk=job_id, identity=identity).first()


def groups_for(credentials: Iterable[tuple[str, str]]) -> list[ComputeGroup]:
    """The compute groups these (join key, join secret) pairs open, each once, in the order
    given; EINVALID naming the first join key that is unknown or whose secret is wrong (one
    refusal for both, so that it tells nobody which keys exist)."""
    pairs = list(credentials)
    keys = {join_key for join_key, _ in pairs}
    found = {group.join_key: group for group in ComputeGroup.objects.filter(join_key__in=keys)}
    opened: dict[str, ComputeGroup] = {}
    for join_key, join_secret in pairs:
        group = found.get(join_key)
        if group is None or not group.opens(join_secret):
            raise SchedulerError(
                "EINVALID", f"compute group {join_key}: unknown group or wrong join secret"
            )
        opened.setdefault(join_key, group)
    return list(opened.values())


def final_events(job: Job) -> list[tuple[EventName, dict[str, Any]]]:
    """The closing event of a job that has ended, for a client that subscribes late."""
    if job.status == JobStatus.FINISHED:
        return [("complete", {"total": job.total})]
    if job.status == JobStatus.CANCELLED:
        return [("cancel", {"code": job.cancel_code, "reason": job.cancel_reason})]
    return []


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


@dataclass
class ResultsPage:
    """Stored results in slice order, and the ranges still to ask for (none: that was all)."""

    results: list[tuple[int, Any]]
    next_ranges: list[tuple[int, int]]


def results_page(
    job: Job, ranges: list[tuple[int, int]], *, limit: int, budget: int
) -> ResultsPage:
    """Stored results of the job's slices within `ranges` (sorted, not overlapping, inclusive):
    at most `limit` of them and about `budget` bytes of JSON, always at least one however
    large. Rows are read a hundred at a time, so a page that fills early never holds the rest
    in memory. The socket's `results` reply and the REST results page are both cut here."""
    page: list[tuple[int, Any]] = []
    size = 0
    for number, value in _results_in_ranges(job, ranges, limit + 1):
        cost = json_bytes(value) + SLICE_OVERHEAD_BYTES
        if page and (len(page) == limit or size + cost > budget):
            last = page[-1][0]
            rest = [(max(start, last + 1), end) for start, end in ranges if end > last]
            return ResultsPage(results=page, next_ranges=rest)
        page.append((number, value))
        size += cost
    return ResultsPage(results=page, next_ranges=[])


def _results_in_ranges(
    job: Job, ranges: list[tuple[int, int]], limit: int
) -> Iterator[tuple[int, Any]]:
    if not ranges:
        return iter(())
    within = Q()
    for start, end in ranges:
        within |= Q(number__gte=start, number__lte=end)
    rows = (
        Slice.objects.filter(job=job, status=SliceStatus.DONE)
        .filter(within)
        .order_by("number")
        .values_list("number", "result")[:limit]
    )
    return rows.iterator(chunk_size=100)


def active_slice_count(job: Job) -> int:
    """How many of the job's slices a worker holds right now (an unexpired lease)."""
    return Slice.objects.filter(
        job=job, status=SliceStatus.LEASED, lease_expires__gte=timezone.now()
    ).count()


def job_status(job: Job) -> dict[str, Any]:
    """Where a job stands, as the `status` event and reply carry it."""
    status = {
        "total": job.total,
        "distributed": job.issued,
        "computed": job.computed,
        "failed": job.failed,
        "status": stage(job),
        "open": job.is_open,
        "totalGPUTime": gpu_seconds(job),
        "totalCPUTime": round(job.cpu_ms / 1000, 3),
        "bytesIn": job.bytes_in,
        "bytesOut": job.bytes_out,
    }
    if job.cpu_rate:
        status["rate"] = format_credits(job.cpu_rate)
        status["gpuRate"] = format_credits(job.gpu_rate)
    if job.verify:
        status["verification"] = verification.verification_status(job)
    waiting = waiting_reason(job)
    if waiting:
        status["waiting"] = waiting
    return status


def stage(job: Job) -> str:
    """The job's status word: running, finished or cancelled, and for a running market-value
    job `paused` while it lacks funds, else `estimation` while its estimation slices run."""
    if job.status == JobStatus.RUNNING and job.nofunds:
        return "paused"
    if job.status == JobStatus.RUNNING and job.estimating:
        return "estimation"
    return str(job.status)


MARKET_WINDOW = timedelta(days=7)  # the jobs the market price is taken from
MARKET_SAMPLE = 200  # at most this many of them, the most recently created


def market_price() -> tuple[int, int]:
    """(base units per CPU-second, jobs it was taken from): the median of what the recent jobs
    with metered results paid for a second of their workers' sandboxes (offer x computed over
    cpu_ms, or a market-value job's rate), or the MARKET_CPU_SECOND_PRICE setting while no job
    has been measured."""
    return _median_rate("cpu_ms", "cpu_rate", settings.MARKET_CPU_SECOND_PRICE)


def market_gpu_price() -> tuple[int, int]:
    """The same for a GPU-second: what recent jobs with metered GPU time paid for a second of
    it (a job paid per slice counts its whole offer), or MARKET_GPU_SECOND_PRICE."""
    return _median_rate("gpu_ms", "gpu_rate", settings.MARKET_GPU_SECOND_PRICE)


def _median_rate(metered: str, rate: str, default: str) -> tuple[int, int]:
    recent = (
        Job.objects.filter(created_at__gte=timezone.now() - MARKET_WINDOW, computed__gt=0)
        .filter(**{f"{metered}__gt": 0})
        .filter(Q(offer__gt=0) | Q(**{f"{rate}__gt": 0}))
        .order_by("-created_at")[:MARKET_SAMPLE]
    )
    rows = recent.values_list("offer", rate, "computed", metered)
    rates = sorted(paid or offer * computed * 1000 / ms for offer, paid, computed, ms in rows)
    if not rates:
        return to_units(default), 0
    return max(round(statistics.median(rates)), 1), len(rates)


def gpu_seconds(job: Job) -> float:
    """Seconds of GPU time the job's kept results used (to the millisecond)."""
    return round(job.gpu_ms / 1000, 3)


def has_requirements(job: Job) -> bool:
    """Whether the job needs something of its workers that not every worker has."""
    return job.needs_webgpu or job.needs_offscreen_canvas


def waiting_reason(job: Job) -> str:
    """Why no worker can take this running job, or "" when some connected worker can."""
    if job.status != JobStatus.RUNNING:
        return ""
    if job.verify and job.issued == job.total:
        blocked = verification.waiting_for_other_users(job)
        if blocked:
            return f"{blocked} slices wait for a worker of another user, to verify their results"
    if not has_requirements(job):
        return ""
    workers = WorkerConnection.objects.all()
    missing = []
    if job.needs_webgpu:
        workers = workers.filter(webgpu=True)
        missing.append("webgpu")
    if job.needs_offscreen_canvas:
        workers = workers.filter(offscreen_canvas=True)
        missing.append("offscreenCanvas")
    if workers.exists():
        return ""
    return f"no connected worker has {' and '.join(missing)}"


def job_info(job: Job) -> JobInfo:
    """What a client needs to handle a job it attached to: work, arguments, input form, offer.

    A computed input (range, product) is given as deployed; a values job gives only its kind,
    its values are fetched with `inputs`.
    """
    form = {"kind": job.input_kind}
    if job.input_kind != "values":
        form.update(job.input_spec)
    return JobInfo(
        work=Work.model_validate({"language": job.language, "source": job.source}),
        args=job.args,
        input=form,
        slice_payment_offer=format_credits(job.offer),
        open=job.is_open,
    )


def inputs_between(job: Job, start: int, end: int, *, budget: int) -> list[Any]:
    """The input values of slices start..end (cut at the job's last slice), in slice order:
    about `budget` bytes of JSON at most, always at least one value."""
    numbers = list(range(start, min(end, job.total) + 1))
    if job.input_kind != "values" or not numbers:
        return job.data_of(numbers)
    rows = SliceInput.objects.filter(job=job, number__gte=numbers[0], number__lte=numbers[-1])
    values: list[Any] = []
    size = 0
    for datum in rows.order_by("number").values_list("datum", flat=True).iterator(100):
        size += json_bytes(datum) + SLICE_OVERHEAD_BYTES
        if values and size > budget:
            break
        values.append(datum)
    return values


# --- history for the portal's charts ----------------------------------------------------------

HISTORY_POINTS = 60  # about this many buckets in a job's chart
# A worker's earnings: the last 24 hours by the hour, or the last 30 days by the day (UTC).
WORKER_PERIODS = {"day": (timedelta(hours=1), 24), "month": (timedelta(days=1), 30)}


@dataclass(frozen=True)
class History:
    """Payments for results in buckets of `width`, from the first bucket's start to `end`."""

    buckets: list[PaymentBucket]
    width: timedelta
    end: datetime

    @property
    def credits(self) -> int:
        return sum(bucket.credits for bucket in self.buckets)

    @property
    def results(self) -> int:
        return sum(bucket.results for bucket in self.buckets)


def job_history(job: Job, *, now: datetime | None = None) -> History:
    """What the job paid for results, and for how many, over its life (creation to its end, or
    to now while it runs) in about HISTORY_POINTS buckets."""
    end = job.finished_at or now or timezone.now()
    width = bucket_width(end - job.created_at, HISTORY_POINTS)
    escrow = f"{ESCROW_PREFIX}{job.id}"
    buckets = payments_out_of(escrow, since=job.created_at, until=end, width=width)
    return History(buckets=buckets, width=width, end=end)


def worker_history(user: User, period: str, *, now: datetime | None = None) -> History:
    """Payments for results into the user's accounts over `period` (a WORKER_PERIODS key)."""
    if period not in WORKER_PERIODS:
        raise ValueError(f"no history period {period!r}: one of {', '.join(WORKER_PERIODS)}")
    width, count = WORKER_PERIODS[period]
    end = now or timezone.now()
    since = bucket_start(end, width) - (count - 1) * width
    addresses = Key.objects.filter(user=user, kind=KeyKind.ACCOUNT).values_list(
        "address", flat=True
    )
    buckets = payments_into(list(addresses), since=since, until=end, width=width)
    return History(buckets=buckets, width=width, end=end)
