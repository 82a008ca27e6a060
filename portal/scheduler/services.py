"""Every write of the scheduler: deploy, claim, results, give-backs, cancel and finish.

The database is the source of truth: a slice is handed to one worker at a time by an atomic
claim, a result is accepted only from the worker that holds the slice's lease, and the payment
for a batch of results is one ledger transaction in the same database transaction, so a crash
at any point either keeps everything or nothing. What a write changed is announced through
notify, once, when its transaction commits, whoever asked for it. A job that asked for
verification pays for results only once they agree (verification.py): its escrow covers
`offer x slices x quorum`, and its slices go to workers of distinct users.
"""

from __future__ import annotations

import json
import logging
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    Count,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Least
from django.utils import timezone

from dcp.protocol import policy
from dcp.protocol.credits import MAX_CREDITS, format_credits, to_units
from dcp.protocol.gpu_use import uses_gpu
from dcp.protocol.inputs import InputError, span_of
from dcp.protocol.messages import (
    AddSlices,
    Deploy,
    Escrow,
    GroupCredential,
    ValuesInput,
    WorkerHello,
)
from dcp.protocol.signed import recover_signer, session_text
from dcp.protocol.values import BlobRef, references
from dcp.protocol.verify import NO_QUORUM, replicas
from dcp.runtime.packages import (
    UnsafeJobFiles,
    UnsafeWheel,
    check_job_files,
    check_wheel,
    normalize_name,
    open_job_files,
    open_wheel,
)
from portal.bank import services as bank
from portal.store import selectors as store
from portal.store.files import object_path
from portal.users.models import User
from portal.wallet.services import ensure_default_account

from . import cheques, notify, payouts, pricing, sizing, verification, worker_credentials
from .errors import SchedulerError
from .models import (
    InputBatch,
    Job,
    JobComputeGroup,
    JobStatus,
    LostLease,
    Replica,
    Slice,
    SliceInput,
    SliceStatus,
    WorkerConnection,
    WorkerTally,
    number_among,
)
from .pyodide_files import pyodide_index
from .selectors import groups_for, identity_owner, job_status

__all__ = ["SchedulerError"]  # re-exported: callers catch it from here

log = logging.getLogger(__name__)


@dataclass
class JobSpec:
    """What a client deploys, already validated by the protocol schema."""

    ref: str
    language: str
    source: str
    args: list[Any]
    input_kind: str
    input_spec: dict[str, Any] = field(default_factory=dict)
    values: list[Any] | None = None
    is_open: bool = False
    offer: int = 0
    cpu_rate: int = 0  # market value: base units per CPU-second (the offer is then 0)
    gpu_rate: int = 0  # market value: base units per GPU-second
    budget: int = 0  # market value: what moves into the escrow at deploy
    public: dict[str, Any] = field(default_factory=dict)
    requirements: dict[str, Any] = field(default_factory=dict)
    progress_timeout: int = 60
    verify: dict[str, Any] | None = None  # the protocol's Verify, as deployed
    # (join key, join secret) of each compute group it is deployed into; none: the public
    # group. Checked, never stored, and kept out of the spec's repr.
    compute_groups: list[tuple[str, str]] = field(default_factory=list, repr=False)

    @property
    def replicas(self) -> int:
        """Results of each slice the escrow pays for: the quorum when verified, else one."""
        return replicas(self.verify)


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
    noprogress: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    rejected: dict[str, Any] | None = None  # results refused: not leased to this worker
    kept: int = 0  # results of slices the worker held
    earned: int = 0
    status: dict[str, Any] | None = None
    completed: bool = False
    cancelled: tuple[str, str] | None = None


# --- client sessions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """A client connection's proven identity key and the portal user who owns it."""

    identity: str
    user: User


def open_session(*, nonce: str, identity: str, signature: str) -> Session:
    """Check a client's answer to its challenge: `identity` signed this connection's nonce."""
    signer = recover_signer(session_text(nonce), signature)
    if signer is None or signer.lower() != identity.lower():
        raise SchedulerError("EBADSIG", "the signature does not match this session's challenge")
    owner = identity_owner(signer)
    if owner is None:
        raise SchedulerError(
            "ENOIDENTITY", "identity not registered: create one on the First Devs tab"
        )
    return Session(identity=signer, user=owner)


# --- deploy -----------------------------------------------------------------------------------


def slice_count(spec: JobSpec) -> int:
    """How many slices the spec's input makes, without enumerating a range."""
    if spec.input_kind == "values":
        return len(spec.values or [])
    try:
        return span_of(spec.input_kind, spec.input_spec).slices
    except InputError as error:
        raise SchedulerError("EINVALID", str(error)) from None


def job_spec(request: Deploy) -> JobSpec:
    """The job a `deploy` frame asks for, in the scheduler's terms."""
    spec = JobSpec(
        ref=request.ref,
        language=request.work.language,
        source=request.work.source,
        args=request.args,
        input_kind=request.input.kind,
        is_open=request.open,
        offer=to_units(request.slice_payment_offer),
        public=request.public.model_dump(exclude_defaults=True),
        requirements=request.requirements.model_dump(exclude_defaults=True),
        progress_timeout=request.progress_timeout,
        verify=request.verify.model_dump() if request.verify is not None else None,
        compute_groups=credentials(request.compute_groups),
    )
    if isinstance(request.input, ValuesInput):
        spec.values = request.input.values
    else:
        spec.input_spec = request.input.model_dump(exclude={"kind"})
    return spec


def credentials(groups: list[GroupCredential]) -> list[tuple[str, str]]:
    """(join key, join secret) of each compute group of a deploy or a worker's hello."""
    return [(group.joinKey, group.joinSecret) for group in groups]


def deploy_signed(
    *, owner: User, identity: str, request: Deploy, frame: dict[str, Any], subscriber: str
) -> Job:
    """Deploy a job from the client socket: its cheque must be signed by the paying account
    and cover `offer x slices` (x the quorum of a verified job); the deploying connection
    (`subscriber`) watches the job."""
    payer = cheques.deploy_payer(request, frame)
    spec = job_spec(request)
    if request.market_value is not None:
        _price_at_market(spec, request)
    else:
        cheques.require_covered(
            request.payment.max_total, request.slice_payment_offer, slice_count(spec), spec.replicas
        )
    job, _ = deploy_job(
        owner=owner, identity=identity, payer=payer, spec=spec, subscriber=subscriber
    )
    return job


def _price_at_market(spec: JobSpec, request: Deploy) -> None:
    """A market-value deploy: its rate from the market, its cheque's max_total its budget."""
    assert request.market_value is not None
    if request.slice_payment_offer:
        raise SchedulerError(
            "EINVALID", "a market-value job pays per CPU-second: its slice_payment_offer is 0"
        )
    if spec.verify is not None:
        raise SchedulerError(
            "EINVALID", "a verified job pays per slice: deploy it with a slice_payment_offer"
        )
    budget = to_units(min(request.payment.max_total, MAX_CREDITS))
    if budget < 1:
        raise SchedulerError(
            "EBADPAYMENT", "a market-value job's cheque is its budget: max_total must be above 0"
        )
    spec.cpu_rate, spec.gpu_rate = pricing.market_rates(request.market_value.multiplier)
    spec.budget = budget


def deploy_job(
    *, owner: User, identity: str, payer: str, spec: JobSpec, subscriber: str | None = None
) -> tuple[Job, bool]:
    """Create a job and move `offer x slices` into its escrow; (job, False) when `ref` exists.

    A job's values are stored STORE_BATCH at a time, each batch a transaction of its own, so
    that other writers interleave with a huge deploy; meanwhile the job is open (it cannot
    complete) and workers may start on what is stored. A deploy that stopped midway (a crash)
    goes on where it stopped when the client deploys the same `ref` again.

    The workers are woken; `subscriber`, a client connection's channel, watches the job (a
    client that deploys again after a reconnect gets the job it deployed, watched again).
    """
    values = None
    if spec.input_kind == "values":
        values = _prepared(spec.source, spec.args, spec.values or [])
    job, created = _find_or_create(owner, identity, payer, spec, values, subscriber)
    if values is not None and job.status == JobStatus.RUNNING and job.total < len(values.texts):
        while _store_batch(job, values.texts):
            pass
        job = _stored(job, spec)
    if created or subscriber:
        with transaction.atomic():
            notify.job_deployed(job, job_status(job), subscriber)
    return job, created


@dataclass
class Prepared:
    """A job's input values as the JSON texts to store, and how many fit in one task frame."""

    texts: list[str | None]
    frame_slices: int


def _prepared(source: str, args: Any, values: list[Any]) -> Prepared:
    """The values as JSON, checked before anything is stored: EINVALID for a value that cannot
    travel in a task with the work function."""
    texts = [None if value is None else _to_json(value) for value in values]
    longest = max(map(len, filter(None, texts)), default=4)  # characters; bytes: at most 4x
    candidates = (text for text in texts if text is not None and len(text) * 4 >= longest)
    largest = max((len(text.encode()) for text in candidates), default=4)
    fitting = sizing.frame_slices(source, args, largest)
    if fitting < 1:
        raise SchedulerError("EINVALID", _too_big_for_a_task(source, args, largest))
    return Prepared(texts, fitting)


@transaction.atomic
def _find_or_create(
    owner: User,
    identity: str,
    payer: str,
    spec: JobSpec,
    values: Prepared | None,
    subscriber: str | None,
) -> tuple[Job, bool]:
    job = Job.objects.filter(ref=spec.ref).first()
    if job is None:
        job = _create_job(owner=owner, identity=identity, payer=payer, spec=spec, values=values)
        if subscriber:
            # Watching from the commit that makes the job visible to workers: a polling worker
            # may take a slice at once, and its result must not reach the job's group first.
            notify.watch(job.id, subscriber)
        return job, True
    if job.identity != identity:
        raise SchedulerError("EINVALID", "this job reference belongs to another identity")
    return job, False


def _create_job(
    *, owner: User, identity: str, payer: str, spec: JobSpec, values: Prepared | None
) -> Job:
    total = _checked_total(owner, spec)
    packages = spec.requirements.get("packages", [])
    _check_blobs(owner, spec.args, spec.values or [], named=_stored_requirements(spec))
    _check_packages(packages, spec.requirements.get("pyodide", []))
    _check_job_files(spec.requirements.get("fs"))
    if values is None and sizing.frame_slices(spec.source, spec.args, 0) < 1:
        raise SchedulerError("EINVALID", _too_big_for_a_task(spec.source, spec.args))
    groups = groups_for(spec.compute_groups)
    environment = spec.requirements.get("environment", {})
    # A work function that uses the GPU needs a WebGPU worker, whoever deployed it.
    needs_webgpu = bool(environment.get("webgpu")) or uses_gpu(spec.language, spec.source)
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
        input_spec=spec.input_spec,
        # Open while its values are being stored: it may not complete before they all are.
        is_open=spec.is_open or bool(values and values.texts),
        requirements=spec.requirements,
        needs_webgpu=needs_webgpu,
        needs_offscreen_canvas=bool(environment.get("offscreenCanvas")),
        discrete=bool(spec.requirements.get("discrete")),
        progress_timeout=spec.progress_timeout,
        frame_slices=values.frame_slices if values else 0,
        total=0 if values is not None else total,
        offer=spec.offer,
        cpu_rate=spec.cpu_rate,
        # GPU time is paid only where the job needs a GPU: another job's claims of it say
        # nothing the scheduler could check.
        gpu_rate=spec.gpu_rate if needs_webgpu else 0,
        estimating=bool(spec.cpu_rate),
        public=spec.public,
        verify=spec.verify,
    )
    JobComputeGroup.objects.bulk_create(JobComputeGroup(job=job, group=g) for g in groups)
    cost = spec.budget if spec.cpu_rate else spec.offer * total * spec.replicas
    _fund(job, payer, cost, f"escrow:{job.id}")
    return job


def _stored_requirements(spec: JobSpec) -> dict[str, tuple[str, int]]:
    """The objects of the store a job's requirements name: its wheels and its files, each as
    sha256 -> (what it is, its size)."""
    named = {
        package["sha256"]: (f"package {package['file']}", package["size"])
        for package in spec.requirements.get("packages", [])
    }
    files = spec.requirements.get("fs")
    if files:
        named[files["sha256"]] = ("the job's files (job.fs)", files["size"])
    return named


def _check_blobs(owner: User, *values: Any, named: Mapping[str, tuple[str, int]] = {}) -> None:
    """Refuse values that reference blobs, and objects a deploy's requirements name (wheels,
    the job's files: `named`, from _stored_requirements), that their deployer's user has not
    stored or claimed (docs/store.md), before anything is stored or paid."""
    objects = [{"$blob": sha256, "size": size} for sha256, (_, size) in named.items()]
    try:
        refused = store.foreign_or_missing_blobs(owner, *values, objects)
    except ValueError as error:
        raise SchedulerError("EINVALID", f"a value breaks the value encoding: {error}") from None
    if refused:
        what = named[refused[0]][0] if refused[0] in named else "blob"
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise SchedulerError(
            "ENOBLOB",
            f"{what} {refused[0]}{more} is not in the portal's store for you: upload it first "
            "(PUT /store/<sha256>)",
        )


def _check_packages(packages: Sequence[Mapping[str, Any]], pyodide: Sequence[str]) -> None:
    """Refuse a job whose wheels a sandbox would refuse (dcp.runtime.packages.check_wheel), or
    whose Pyodide packages this portal does not serve (docs/packages.md)."""
    for package in packages:
        _check_wheel_file(package)
    if not pyodide:
        return
    index = pyodide_index()
    missing = [name for name in pyodide if index.find(name) is None]
    if missing:
        raise SchedulerError(
            "ENOPACKAGE",
            f"this portal does not serve Pyodide's {missing[0]} (nor all it depends on): "
            "require it as a pure-Python wheel, or ask the operator to add Pyodide's packages",
        )


def _check_job_files(files: Mapping[str, Any] | None) -> None:
    """The stored archive of the job's files passes the sandbox's check (check_job_files)."""
    if not files:
        return
    try:
        with (
            object_path(files["sha256"]).open("rb") as file,
            open_job_files(file) as archive,
        ):
            check_job_files(archive)
    except (UnsafeJobFiles, zipfile.BadZipFile, OSError) as error:
        raise SchedulerError("EINVALID", f"job.fs: {error}") from None


def _check_wheel_file(package: Mapping[str, Any]) -> None:
    """The stored wheel passes the sandbox's check and is the distribution it says it is."""
    try:
        with (
            object_path(package["sha256"]).open("rb") as file,
            open_wheel(file, package["file"]) as archive,
        ):
            wheel = check_wheel(archive, package["file"])
    except (UnsafeWheel, zipfile.BadZipFile, OSError) as error:
        raise SchedulerError("EUNSAFEWHEEL", f"package {package['file']}: {error}") from None
    said = (normalize_name(package["name"]), package["version"])
    if (normalize_name(wheel.name), wheel.version) != said:
        raise SchedulerError(
            "EINVALID",
            f"package {package['file']} holds {wheel.name} {wheel.version}, "
            f"not {package['name']} {package['version']}",
        )


@transaction.atomic
def _store_batch(job: Job, texts: list[str | None]) -> bool:
    """Store the next STORE_BATCH values of a job being deployed (after those stored before,
    by this deploy or one it resumes); False once all are stored or the job has ended."""
    locked = Job.objects.select_for_update().get(pk=job.pk)
    if locked.status != JobStatus.RUNNING or locked.total >= len(texts):
        return False
    batch = texts[locked.total : locked.total + STORE_BATCH]
    _insert_values(locked, locked.total + 1, batch)
    Job.objects.filter(pk=job.pk).update(total=F("total") + len(batch))
    job.total = locked.total + len(batch)
    return True


@transaction.atomic
def _stored(job: Job, spec: JobSpec) -> Job:
    """Every value is stored: the job is open only if it was deployed open."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    job.is_open = spec.is_open
    job.save(update_fields=["is_open"])
    if (
        job.status == JobStatus.RUNNING
        and job.computed == job.total
        and not job.is_open
        and not job.owed
    ):
        _close_job(job, status=JobStatus.FINISHED)
        notify.job_completed(job)
    return job


def _checked_total(owner: User, spec: JobSpec) -> int:
    """The job's slice count, refusing what may not be deployed."""
    if owner.first_dev_since is None:
        raise SchedulerError(
            "ENOTFIRSTDEV", "join First Devs on the portal's First Devs tab to deploy jobs"
        )
    if spec.is_open and spec.input_kind != "values":
        raise SchedulerError("EINVALID", "only a job of values can be open: a range is whole")
    total = slice_count(spec)
    if total < 1 and not spec.is_open:
        raise SchedulerError("EINVALID", "the job has no slices: its input is empty")
    if total > settings.MAX_SLICES_PER_JOB:
        raise SchedulerError(
            "EINVALID", f"{total} slices is more than {settings.MAX_SLICES_PER_JOB} per job"
        )
    return total


def _insert_values(job: Job, first: int, texts: list[str | None]) -> None:
    """Store values (as JSON texts) as the inputs of slices `first`, `first + 1`, ..., with one
    prepared statement run for every row."""
    table = SliceInput._meta.db_table
    datum = "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"
    sql = f"INSERT INTO {table} (job_id, number, datum) VALUES (%s, %s, {datum})"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(job.id, first + i, text) for i, text in enumerate(texts)])


STORE_BATCH = 5000  # rows per statement when storing input values
_SEPARATOR = ", "  # between the items of a JSON list
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(_SEPARATOR, ": ")).encode


def _too_big_for_a_task(source: str, args: Any, largest: int = 0) -> str:
    mib = 1024 * 1024
    what = f"an input value of {largest / mib:.1f} MiB with " if largest else ""
    work = (sizing.json_bytes(source) + sizing.json_bytes(args)) / mib
    return (
        f"{what}the work function and its arguments ({work:.1f} MiB) would not fit in one "
        f"task frame of {settings.MAX_FRAME_BYTES / mib:.0f} MiB: send large data in smaller "
        "values"
    )


def _fund(job: Job, payer: str, amount: int, idempotency_key: str) -> None:
    if not amount:
        return
    try:
        bank.open_escrow(
            job_ref=job.id,
            payer=bank.account_for_address(payer),
            amount=amount,
            idempotency_key=idempotency_key,
        )
    except bank.IdempotencyConflict:
        raise SchedulerError(
            "EIDEMPOTENCY",
            "this request's ref (an Idempotency-Key) was used before for another amount",
        ) from None
    except bank.InsufficientFunds:
        each = f" ({job.replicas} verifying results a slice)" if job.replicas > 1 else ""
        raise SchedulerError(
            "ENOFUNDS",
            f"account {payer} holds too few credits to pay for these slices: they need "
            f"{format_credits(amount)} credits{each}",
        ) from None


def add_slices_signed(*, identity: str, request: AddSlices, frame: dict[str, Any]) -> Job:
    """Append a batch from the client socket, paid by the account that signed its cheque."""
    job, _ = add_slices(
        job_id=request.job,
        identity=identity,
        batch_ref=request.ref,
        values=request.values,
        payer=cheques.batch_payer(request, frame),
        # More than the ledger holds covers any batch: compared as the most it can hold.
        max_total=to_units(min(request.payment.max_total, MAX_CREDITS)),
    )
    return job


@transaction.atomic
def add_slices(
    *, job_id: str, identity: str, batch_ref: str, values: list[Any], payer: str, max_total: int
) -> tuple[Job, bool]:
    """Append values to an open job and fund them (a market-value job: `max_total` is added to
    its budget); a batch `ref` seen before adds nothing."""
    job = _locked_job_of_identity(job_id, identity)
    if InputBatch.objects.filter(job=job, ref=batch_ref).exists():
        return job, False
    if not job.is_open or job.status != JobStatus.RUNNING:
        raise SchedulerError("ECLOSED", f"job {job.id} is closed: it takes no more slices")
    if payer != job.payer:
        raise SchedulerError("EBADPAYMENT", "an open job is paid by the account that deployed it")
    cost = job.offer * len(values) * job.replicas
    if max_total < cost:
        raise SchedulerError("EBADPAYMENT", "the batch's payment does not cover its slices")
    if job.total + len(values) > settings.MAX_SLICES_PER_JOB:
        raise SchedulerError("EINVALID", f"more than {settings.MAX_SLICES_PER_JOB} slices per job")
    _check_blobs(job.owner, values)
    InputBatch.objects.create(job=job, ref=batch_ref, first=job.total + 1, count=len(values))
    prepared = _prepared(job.source, job.args, values)
    _insert_values(job, job.total + 1, prepared.texts)
    job.frame_slices = min(job.frame_slices or prepared.frame_slices, prepared.frame_slices)
    Job.objects.filter(pk=job.pk).update(frame_slices=job.frame_slices)
    _fund(job, payer, max_total if job.cpu_rate else cost, f"escrow:{job.id}:{batch_ref}")
    Job.objects.filter(pk=job.pk).update(total=F("total") + len(values))
    job.total += len(values)
    if job.cpu_rate:
        pricing.pay_debts(job, batch_ref)
        pricing.resume(job)
    notify.slices_added(job, job_status(job))
    return job, True


def escrow_signed(*, identity: str, request: Escrow, frame: dict[str, Any]) -> tuple[Job, int]:
    """Add the amount of an `escrow` request's cheque to its job's escrow; (job, base units the
    escrow holds now)."""
    return add_escrow(
        job_id=request.job,
        identity=identity,
        ref=request.ref,
        payer=cheques.batch_payer(request, frame),
        amount=to_units(min(request.payment.max_total, MAX_CREDITS)),
    )


@transaction.atomic
def add_escrow(*, job_id: str, identity: str, ref: str, payer: str, amount: int) -> tuple[Job, int]:
    """Add `amount` to a running market-value job's escrow (a `ref` seen before adds nothing);
    a job paused for want of funds resumes when the escrow pays for a slice again."""
    job = _locked_job_of_identity(job_id, identity)
    if job.status != JobStatus.RUNNING:
        raise SchedulerError("ECLOSED", f"job {job.id} has ended: its escrow was refunded")
    if not job.cpu_rate:
        raise SchedulerError(
            "EINVALID",
            f"job {job.id} pays per slice: its escrow holds what its slices cost already",
        )
    if payer != job.payer:
        raise SchedulerError(
            "EBADPAYMENT", "a job's escrow is paid by the account that deployed it"
        )
    if amount < 1:
        raise SchedulerError("EBADPAYMENT", "an escrow request adds more than 0 credits")
    _fund(job, payer, amount, f"escrow:{job.id}:{ref}")
    pricing.pay_debts(job, ref)
    pricing.resume(job)
    notify.announce(notify.event(job.id, "status", job_status(job)))
    if job.computed == job.total and not job.is_open and not job.owed:
        _close_job(job, status=JobStatus.FINISHED)
        notify.job_completed(job)
    return job, pricing.escrow_balance(job)


@transaction.atomic
def close_job(*, job_id: str, identity: str) -> tuple[Job, bool]:
    """Take no more slices; (job, True) when that made the job complete."""
    job = _locked_job_of_identity(job_id, identity)
    if not job.is_open:
        return job, False
    job.is_open = False
    job.save(update_fields=["is_open"])
    if job.status == JobStatus.RUNNING and job.computed == job.total and not job.owed:
        _close_job(job, status=JobStatus.FINISHED)
        notify.job_completed(job)
        return job, True
    return job, False


def _locked_job_of_identity(job_id: str, identity: str) -> Job:
    job = Job.objects.select_for_update().filter(pk=job_id, identity=identity).first()
    if job is None:
        raise SchedulerError("ENOJOB", f"no job {job_id} for this identity")
    return job


# --- dispatch ---------------------------------------------------------------------------------


def requeue_lapsed_leases(*, now: datetime | None = None) -> int:
    """Slices whose lease ran out go back to the queue, each a lease lost; returns how many."""
    lapsed = "lease_expires < %s"
    return _requeue(lapsed, [connection.ops.adapt_datetimefield_value(now or timezone.now())])


def return_slices(
    *, worker: str, job_id: str | None = None, numbers: list[int] | None = None
) -> int:
    """Give a worker's leased slices back to the queue (Stop; or the suspension of its user)."""
    where = "worker = %s"
    params: list[Any] = [worker]
    if job_id is not None:
        where, params = where + " AND job_id = %s", [*params, job_id]
    if numbers is not None:
        if not numbers:
            return 0
        where += f" AND number IN ({', '.join(['%s'] * len(numbers))})"
        params += numbers
    return _requeue(where, params, lost=False)


def _requeue(where: str, params: list[Any], *, lost: bool = True) -> int:
    """Leased slices matching `where` go back to the queue and the workers are woken. When
    they went unanswered (`lost`), the users whose workers held them are counted against
    each slice, once per user; a slice lost by MAX_LOST_LEASES users then cancels its job (in
    a transaction of its own, which holds no slice while it waits for the job's row)."""
    table = Slice._meta.db_table
    leased = [SliceStatus.LEASED, *params]
    with transaction.atomic(), connection.cursor() as cursor:
        holders: list[tuple[int, str]] = []
        if lost:
            cursor.execute(f"SELECT id, worker FROM {table} WHERE status = %s AND {where}", leased)  # noqa: S608
            holders = cursor.fetchall()
        cursor.execute(
            f"UPDATE {table} SET status = %s, worker = '', lease_expires = NULL "  # noqa: S608
            f"WHERE status = %s AND {where} RETURNING id",
            [SliceStatus.NEW, *leased],
        )
        returned = {row[0] for row in cursor.fetchall()}
        if returned:
            notify.work_available()
        doomed = _count_lost([(i, w) for i, w in holders if i in returned])
    for job_id, number, times in doomed:
        _cancel_for_lost_slice(job_id, number, times)
    return len(returned)


def _count_lost(holders: list[tuple[int, str]]) -> list[tuple[str, int, int]]:
    """Record which users lost these slices (id, worker); returns (job, slice, users) of each
    slice that has now been lost by MAX_LOST_LEASES users, one a job."""
    users = dict(
        WorkerConnection.objects.filter(id__in={w for _, w in holders}).values_list("id", "user_id")
    )
    losses = [LostLease(slice_id=i, user_id=users[w]) for i, w in holders if w in users]
    if not losses:
        return []
    LostLease.objects.bulk_create(losses, ignore_conflicts=True, batch_size=1000)
    ids = [loss.slice_id for loss in losses]
    counted = LostLease.objects.filter(slice=OuterRef("pk")).values("slice")
    doomed: dict[str, tuple[str, int, int]] = {}
    for start in range(0, len(ids), 1000):
        chunk = Slice.objects.filter(id__in=ids[start : start + 1000])
        chunk.update(lost=Subquery(counted.annotate(n=Count("*")).values("n")))
        worst = chunk.filter(lost__gte=policy.MAX_LOST_LEASES)
        for job_id, number, times in worst.values_list("job_id", "number", "lost"):
            doomed.setdefault(job_id, (job_id, number, times))
    return list(doomed.values())


@transaction.atomic
def _cancel_for_lost_slice(job_id: str, number: int, times: int) -> None:
    job = Job.objects.select_for_update().filter(pk=job_id).first()
    if job is not None and job.status == JobStatus.RUNNING:
        job.failed += 1
        _cancel(job, code=policy.LOST_SLICE, reason=policy.lost_slice_reason(number, times))


def extend_leases(*, worker: str, job_id: str, numbers: list[int]) -> int:
    """A worker says its slices make progress: their leases run on, but not past
    MAX_SLICE_SECONDS from when each was handed out (progress alone cannot hold a slice
    forever; then its lease lapses and it goes back to the queue)."""
    now = timezone.now()
    deadline = now + timedelta(seconds=settings.SLICE_LEASE_SECONDS)
    return Slice.objects.filter(
        number_among(numbers),
        worker=worker,
        job_id=job_id,
        status=SliceStatus.LEASED,
        leased_at__gt=now - timedelta(seconds=settings.MAX_SLICE_SECONDS),
    ).update(lease_expires=deadline)


@dataclass(frozen=True)
class Capabilities:
    """What a worker can run and whose jobs it takes; other jobs are not handed to it.

    `compute_groups`: the ids of the compute groups it joined; `public_group`: whether it also
    takes the jobs of no group (every worker does unless its hello leaves the public group);
    `jobs`: the only jobs it takes, when its hello named some (they narrow what its groups
    allow, never widen it).
    """

    webgpu: bool = False
    offscreen_canvas: bool = False
    compute_groups: frozenset[int] = frozenset()
    public_group: bool = True
    jobs: frozenset[str] = frozenset()
    min_wage: int = 0  # base units per CPU-second (0: any job)


def jobs_with_work(capabilities: Capabilities) -> list[str]:
    """Running jobs that have slices to hand out and that this worker can run: those never
    handed out first, then the one served longest ago, so that jobs take turns (a job of
    huge or slow slices does not hold every worker while newer jobs wait).

    Every claim asks this, so its SQL is built once per kind of worker and kept: building the
    query in the ORM cost three times what running it does."""
    key = (capabilities, settings.MARKET_ESTIMATION_SLICES, connection.vendor)
    compiled = _JOBS_WITH_WORK_SQL.get(key)
    if compiled is None:
        if len(_JOBS_WITH_WORK_SQL) >= KEPT_QUERIES:
            _JOBS_WITH_WORK_SQL.clear()
        compiled = _JOBS_WITH_WORK_SQL[key] = _jobs_with_work(capabilities).query.sql_with_params()
    sql, params = compiled
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


KEPT_QUERIES = 256  # kinds of worker whose jobs_with_work SQL is kept (then built anew)
_JOBS_WITH_WORK_SQL: dict[tuple[Any, ...], tuple[str, tuple[Any, ...]]] = {}


def _jobs_with_work(capabilities: Capabilities) -> QuerySet[Job, str]:
    rows = _running_with_work().filter(_served_by(capabilities))
    if not capabilities.webgpu:
        rows = rows.filter(needs_webgpu=False)
    if not capabilities.offscreen_canvas:
        rows = rows.filter(needs_offscreen_canvas=False)
    if capabilities.min_wage:
        rows = rows.filter(_pays_at_least(capabilities.min_wage))
    turns = (F("dispatched_at").asc(nulls_first=True), "created_at")
    return rows.order_by(*turns).values_list("id", flat=True)[:8]


def _running_with_work() -> QuerySet[Job]:
    """Running jobs with slices to hand out: never handed out, or given back; not those paused
    for want of funds, nor those whose estimation slices are all out (pricing.py)."""
    returned = Slice.objects.filter(job=OuterRef("pk"), status=SliceStatus.NEW)
    estimation = Least(F("total"), Value(settings.MARKET_ESTIMATION_SLICES))
    estimating = Q(estimating=True, issued__gte=estimation)
    return Job.objects.filter(status=JobStatus.RUNNING, nofunds=False).filter(
        (Q(issued__lt=F("total")) & ~estimating) | Exists(returned)
    )


def _pays_at_least(wage: int) -> Q:
    """Jobs that pay at least `wage` base units per CPU-second: their offer over the mean
    metered time of their kept results (offer x computed x 1000 >= wage x cpu_ms), and those
    not measured yet (their first results measure them) unless they pay nothing at all."""
    paid = ExpressionWrapper(F("offer") * F("computed") * 1000.0 / wage, output_field=FloatField())
    measured = Q(cpu_ms__gt=0) & Q(computed__gt=0)
    per_slice = Q(cpu_rate=0, offer__gt=0) & (~measured | Q(cpu_ms__lte=paid))
    return per_slice | Q(cpu_rate__gte=wage)


def _served_by(capabilities: Capabilities) -> Q:
    """The jobs of the worker's groups: those deployed into a group it joined, and those of no
    group when it serves the public group; of those, only the jobs it named, if it named any."""
    links = JobComputeGroup.objects.filter(job=OuterRef("pk"))
    served = Q(Exists(links.filter(group_id__in=capabilities.compute_groups)))
    if capabilities.public_group:
        served |= Q(~Exists(links))
    if capabilities.jobs:
        served &= Q(pk__in=capabilities.jobs)
    return served


def any_work() -> bool:
    """Whether some running job has slices to hand out (for any worker)."""
    return _running_with_work().exists()


def claim_slices(
    *,
    worker: str,
    limit: int,
    capabilities: Capabilities | None = None,
    user: User | None = None,
    most_held: int | None = None,
    size_of: Callable[[str], int] | None = None,
) -> Task | None:
    """Lease up to `limit` slices of the oldest job with work to `worker`, atomically, and no
    more than leave it holding `most_held` slices in all. With `size_of(job id)`, what the
    worker computes of a job in about a second: up to that many of it, and no more than leave
    it holding sizing.HELD_TASKS times that (so that claiming many cores, or asking again and
    again, cannot lease a whole job to one connection).

    A slice of a verified job is never handed to a worker of a `user` who already gave a result
    for it, and a suspended user's workers get nothing."""
    if user is not None and verification.suspension(user):
        return None
    held = 0
    if most_held is not None or size_of is not None:
        held = Slice.objects.filter(worker=worker, status=SliceStatus.LEASED).count()
    if most_held is not None:
        limit = min(limit, most_held - held)
        if limit <= 0:
            return None
    for job_id in jobs_with_work(capabilities or Capabilities()):
        size = limit
        if size_of is not None:
            per_task = size_of(job_id)
            size = min(limit, per_task, sizing.HELD_TASKS * per_task - held)
            if size <= 0:
                continue
        task = _claim_from_job(job_id=job_id, worker=worker, limit=size, user=user)
        if task is not None:
            return task
    return None


@transaction.atomic
def _claim_from_job(*, job_id: str, worker: str, limit: int, user: User | None) -> Task | None:
    job = Job.objects.select_for_update().get(pk=job_id)
    if job.status != JobStatus.RUNNING:
        return None
    if job.discrete:
        limit = 1
    if job.frame_slices:
        limit = min(limit, job.frame_slices)
    limit = pricing.dispatch_limit(job, limit)
    if limit < 1:
        return None
    deadline = timezone.now() + timedelta(seconds=lease_seconds(job))
    numbers = _claim_returned(
        job_id=job_id,
        worker=worker,
        limit=limit,
        deadline=deadline,
        not_of=user if job.verify else None,
    )
    cap = pricing.fresh_cap(job)
    fresh = max(
        min(limit - len(numbers), job.total - job.issued, *([cap] if cap is not None else [])), 0
    )
    if fresh > 0:
        first = job.issued + 1
        _insert_leased(job.id, range(first, first + fresh), worker, deadline)
        job.issued += fresh
        numbers.extend(range(first, first + fresh))
    if not numbers:
        return None
    Job.objects.filter(pk=job.pk).update(issued=F("issued") + fresh, dispatched_at=timezone.now())
    slices = list(zip(numbers, job.data_of(numbers), strict=True))
    _meter(job, user, bytes_in=_encoded_bytes([datum for _, datum in slices]))
    return Task(job=job, slices=slices)


def _insert_leased(job_id: str, numbers: range, worker: str, deadline: datetime) -> None:
    """Slice rows for numbers handed out the first time (a run of consecutive numbers), in one
    statement that counts them out in the database: a row a statement costs PostgreSQL ten
    times the insert itself."""
    table = Slice._meta.db_table
    sql = (
        "WITH RECURSIVE seq(n) AS (SELECT CAST(%s AS integer) UNION ALL "  # noqa: S608
        "SELECT n + 1 FROM seq WHERE n < %s) "
        f"INSERT INTO {table} (job_id, number, status, worker, lease_expires, leased_at, "
        "attempts, errors, noprogress, lost, last_failed_worker, disputed) "
        "SELECT %s, n, %s, %s, %s, %s, 1, 0, 0, 0, '', FALSE FROM seq"
    )
    adapt = connection.ops.adapt_datetimefield_value
    expires, now = adapt(deadline), adapt(timezone.now())
    params: list[Any] = [numbers.start, numbers.stop - 1, job_id, SliceStatus.LEASED, worker]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, expires, now])


def lease_seconds(job: Job) -> int:
    """A lease outlives the progress timeout, so the sandbox's own stop comes first."""
    return max(settings.SLICE_LEASE_SECONDS, job.progress_timeout + 30)


def _claim_returned(
    *, job_id: str, worker: str, limit: int, deadline: datetime, not_of: User | None
) -> list[int]:
    """Lease slices given back to the queue; `not_of`: none that this user gave a result for."""
    table = Slice._meta.db_table
    skip_locked = " FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
    # A slice that failed on a worker waits a little before that same worker may retry it,
    # so that its one retry goes to another worker when there is one.
    others_only = ""
    if not_of is not None:
        replicas = Replica._meta.db_table
        others_only = (
            f"AND NOT EXISTS (SELECT 1 FROM {replicas} r "  # noqa: S608
            f"WHERE r.slice_id = {table}.id AND r.user_id = %s) "
        )
    sql = (
        f"UPDATE {table} SET status = %s, worker = %s, lease_expires = %s, "  # noqa: S608
        f"leased_at = %s, attempts = attempts + 1 WHERE id IN (SELECT id FROM {table} "
        "WHERE job_id = %s AND status = %s "
        "AND (retry_after IS NULL OR retry_after < %s OR last_failed_worker <> %s) "
        f"{others_only}ORDER BY number LIMIT %s{skip_locked}) RETURNING number"
    )
    adapt = connection.ops.adapt_datetimefield_value
    now = adapt(timezone.now())
    params: list[Any] = [SliceStatus.LEASED, worker, adapt(deadline), now, job_id, SliceStatus.NEW]
    params += [now, worker]
    if not_of is not None:
        params.append(not_of.pk)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        return sorted(row[0] for row in cursor.fetchall())


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
    gpu_ms: Mapping[int, float] | None = None,
    cpu_ms: Mapping[int, float] | None = None,
    cores: int | None = None,
) -> BatchOutcome:
    """Store a worker's batch: results of slices it holds are kept and paid (those of a verified
    job once they agree with another user's), the others are refused and the job's owner told.
    A result that references a blob the store lacks (or breaks the value encoding) is refused
    too, and its slice goes back to the queue for another worker.
    `gpu_ms`, `cpu_ms`: the GPU and sandbox milliseconds each slice's result claims; those of
    kept results are metered into the job's and the worker's totals, with the bytes of the
    kept results (every kept result of a verified job: its work was done); `cores`: how many
    the worker said it computes on, which bounds what a batch may claim in all.

    The job's watchers hear of the batch (results, errors, status, the end) when it commits.
    """
    outcome = BatchOutcome(job_id=job_id)
    job = Job.objects.select_for_update().filter(pk=job_id).first()
    if job is None or job.status != JobStatus.RUNNING:
        return outcome
    results, errors, repeated = _one_answer_each(results, errors)
    results, unstored = _with_stored_blobs(results)
    numbers = [n for n, _ in results] + [e["slice"] for e in errors]
    now = timezone.now()
    leases, suspended = _answerable_leases(job, worker, payee, numbers, now)
    held = {number: pk for number, (pk, _) in leases.items()}
    _refuse(held, numbers, repeated, outcome, suspended or NOT_LEASED)
    _refuse_unstored(job, worker, unstored, outcome)
    paid = _store_answers(job, held, results, errors, worker, payee, payee_address, outcome)
    kept = [(n, value) for n, value in results if n in held]
    claims = {"cpu_ms": cpu_ms or {}, "gpu_ms": gpu_ms or {}}
    times = _meter_results(job, payee, worker, kept, _Clipped(leases, now, kept, cores), claims)
    _pay(job, paid, batch_key, payee, outcome, times)
    _after_payment(job, outcome)
    return outcome


def _answerable_leases(
    job: Job, worker: str, payee: User, numbers: list[int], now: datetime
) -> tuple[dict[int, tuple[int, datetime | None]], str]:
    """The worker's live leases among `numbers`, and why none count ("" when they do): a
    suspended user's results are not taken, and their slices go to others."""
    suspended = verification.suspension(payee) if job.verify else ""
    if suspended:
        return_slices(worker=worker, job_id=job.id)
        return {}, suspended
    return _held_leases(job, worker, numbers, now), ""


def _after_payment(job: Job, outcome: BatchOutcome) -> None:
    """A paid batch's consequences: the estimate, a pause for want of funds, the job's end, and
    the batch's announcements."""
    pricing.estimation_ended(job)
    pricing.funds_left(job)
    _settle(job, outcome)
    outcome.status = job_status(job)
    notify.announce(*_batch_announcements(outcome))


NOT_LEASED = "not leased to this worker (never handed to it, sent twice, or its lease lapsed)"
UNSTORED = "the result references a blob the portal's store lacks, or breaks the value encoding"


def _with_stored_blobs(
    results: list[tuple[int, Any]],
) -> tuple[list[tuple[int, Any]], list[int]]:
    """The results whose blob references name objects of the store, with their sizes; and the
    slice numbers of the others (and of results that break the value encoding)."""
    refs: dict[int, list[BlobRef]] = {}
    broken: set[int] = set()
    for number, value in results:
        try:
            refs[number] = references(value)
        except ValueError:
            broken.add(number)
    missing = store.missing_objects([ref for found in refs.values() for ref in found])
    bad = broken | {n for n, found in refs.items() if not missing.isdisjoint(found)}
    return [(n, v) for n, v in results if n not in bad], sorted(bad)


def _refuse_unstored(job: Job, worker: str, numbers: list[int], outcome: BatchOutcome) -> None:
    """Results that reference what the store lacks are not taken: the worker's slices go back
    to the queue at once (another worker computes them), and the owner is told."""
    if numbers:
        return_slices(worker=worker, job_id=job.id, numbers=numbers)
        _note_rejected(outcome, numbers, UNSTORED)


def _held_leases(
    job: Job, worker: str, numbers: list[int], now: datetime
) -> dict[int, tuple[int, datetime | None]]:
    """number -> (slice id, when it was leased) of the slices among `numbers` that `worker`
    holds a live lease on."""
    rows = Slice.objects.filter(
        number_among(numbers),
        job=job,
        worker=worker,
        status=SliceStatus.LEASED,
        lease_expires__gte=now,
    ).values_list("number", "id", "leased_at")
    return {number: (pk, leased_at) for number, pk, leased_at in rows}


def _store_answers(
    job: Job,
    held: dict[int, int],
    results: list[tuple[int, Any]],
    errors: list[dict[str, Any]],
    worker: str,
    payee: User,
    payee_address: str,
    outcome: BatchOutcome,
) -> Counter[verification.Payee]:
    """Store the results and errors of held slices; returns what each payee is owed results
    for (a verified job's once they agree, another job's at once)."""
    if job.verify:
        paid = _store_verified(job, held, results, worker, payee, payee_address, outcome)
    else:
        _store_results(job, held, results, outcome)
        paid = Counter({verification.Payee(payee.pk, payee_address): len(outcome.accepted)})
    _store_errors(job, held, errors, outcome)
    return paid


def _one_answer_each(
    results: list[tuple[int, Any]], errors: list[dict[str, Any]]
) -> tuple[list[tuple[int, Any]], list[dict[str, Any]], list[int]]:
    """A batch answers each slice once: its first result, else its first error. Returns those
    and the numbers of the repeats (refused like results of slices the worker does not hold)."""
    seen: set[int] = set()
    kept_results, kept_errors, repeated = [], [], []
    for number, value in results:
        if number in seen:
            repeated.append(number)
        else:
            seen.add(number)
            kept_results.append((number, value))
    for error in errors:
        if error["slice"] in seen:
            repeated.append(error["slice"])
        else:
            seen.add(error["slice"])
            kept_errors.append(error)
    return kept_results, kept_errors, repeated


def _refuse(
    held: dict[int, int], numbers: list[int], repeated: list[int], outcome: BatchOutcome, why: str
) -> None:
    """Answers for slices the worker does not hold, and repeats of one in the same batch, are
    not taken: the owner is told."""
    refused = sorted({n for n in numbers if n not in held} | set(repeated))
    if refused:
        _note_rejected(outcome, refused, why)


def _note_rejected(outcome: BatchOutcome, numbers: list[int], why: str) -> None:
    """Add refused answers to the batch's `rejected` event (one per batch: counts add up)."""
    earlier = outcome.rejected or {"count": 0, "reason": "", "slices": []}
    outcome.rejected = {
        "count": earlier["count"] + len(numbers),
        "reason": "; ".join(filter(None, (earlier["reason"], why))),
        "slices": sorted({*earlier["slices"], *numbers})[:20],
    }


def _store_verified(
    job: Job,
    held: dict[int, int],
    results: list[tuple[int, Any]],
    worker: str,
    payee: User,
    address: str,
    outcome: BatchOutcome,
) -> Counter[verification.Payee]:
    """Vote on a verified job's results; the agreeing ones are paid, whoever sent them."""
    votes = verification.record(job, held, results, worker=worker, user=payee, address=address)
    outcome.kept = sum(1 for n, _ in results if n in held)
    outcome.accepted = sorted(votes.accepted)
    outcome.duplicates = votes.duplicates
    _count_computed(job, len(votes.accepted))
    if votes.no_quorum is not None:
        number, reason = votes.no_quorum
        outcome.errors.append(verification.no_quorum_error(number, reason))
        job.failed += 1
        outcome.cancelled = (NO_QUORUM, reason)
    elif votes.requeued:
        notify.work_available()
    return votes.paid


def _settle(job: Job, outcome: BatchOutcome) -> None:
    """Close a job the batch cancelled or completed."""
    if outcome.cancelled:
        code, reason = outcome.cancelled
        _close_job(job, status=JobStatus.CANCELLED, code=code, reason=reason)
    elif job.computed == job.total and not job.is_open and not job.owed:
        _close_job(job, status=JobStatus.FINISHED)
        outcome.completed = True


def _batch_announcements(outcome: BatchOutcome) -> list[notify.Announcement]:
    """A batch's events in the order clients rely on: results, errors, status, the end."""
    job_id = outcome.job_id
    items: list[notify.Announcement] = []
    if outcome.accepted:
        values = [{"slice": n, "value": v} for n, v in outcome.accepted]
        items.append(notify.event(job_id, "result", values))
    items += [notify.event(job_id, "duplicate-result", d) for d in outcome.duplicates]
    if outcome.rejected:
        items.append(notify.event(job_id, "rejected", outcome.rejected))
    items += [notify.event(job_id, "error", error) for error in outcome.errors]
    items += [notify.event(job_id, "noprogress", stalled) for stalled in outcome.noprogress]
    if outcome.status is not None:
        items.append(notify.event(job_id, "status", outcome.status))
    if outcome.completed:
        total = outcome.status["total"] if outcome.status else 0
        items.append(notify.event(job_id, "complete", {"total": total}))
    if outcome.cancelled:
        items += notify.cancel_announcements(job_id, *outcome.cancelled)
    return items


def _store_results(
    job: Job, held: dict[int, int], results: list[tuple[int, Any]], outcome: BatchOutcome
) -> None:
    kept = {n: value for n, value in results if n in held}
    _mark_done([(held[n], value) for n, value in kept.items()])
    outcome.accepted = sorted(kept.items())
    outcome.kept = len(kept)
    _count_computed(job, len(kept))


def _mark_done(rows: list[tuple[int, Any]]) -> None:
    """Slices (id, result) done. On PostgreSQL one statement over one JSON document of them
    all (a statement a row costs it ten times the update itself); on SQLite, which runs in this
    process, one prepared statement run for every row. (An ORM bulk_update builds a CASE per
    row, which costs more than the database work at hundreds of slices a batch.)"""
    table = Slice._meta.db_table
    if connection.vendor == "postgresql":
        sql = (
            f"UPDATE {table} AS s SET status = %s, result = v.pair -> 1, "  # noqa: S608
            "worker = '', lease_expires = NULL "
            "FROM jsonb_array_elements(CAST(%s AS jsonb)) AS v(pair) "
            "WHERE s.id = CAST(v.pair ->> 0 AS bigint)"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [SliceStatus.DONE, json.dumps(rows)])
        return
    sql = (
        f"UPDATE {table} SET status = %s, result = %s, worker = '', "  # noqa: S608
        "lease_expires = NULL WHERE id = %s"
    )
    rows_sql = [(SliceStatus.DONE, json.dumps(value), pk) for pk, value in rows]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows_sql)


class _Clipped:
    """Time claims of kept results, each at most as long as its slice's lease has lasted, and
    all of a batch's at most what the worker's `cores` could compute since the first of them was
    leased (a longer claim is clipped, its result still counts; the clips are logged once a
    batch)."""

    def __init__(
        self,
        leases: Mapping[int, tuple[int, datetime | None]],
        now: datetime,
        kept: Iterable[tuple[int, Any]],
        cores: int | None = None,
    ) -> None:
        self.leased_at = {number: began for number, (_, began) in leases.items()}
        self.now, self.kept, self.cores = now, [number for number, _ in kept], cores
        self.clipped = 0

    def total(self, claims: Mapping[int, float]) -> float:
        total = 0.0
        for number in self.kept:
            claim = claims.get(number)
            if claim is None:
                continue
            most = _lease_ms(self.leased_at.get(number), self.now)
            if claim > most:
                claim, self.clipped = most, self.clipped + 1
            total += claim
        began = [self.leased_at.get(number) for number in self.kept]
        if self.cores and total and None not in began:
            most = self.cores * _lease_ms(min(b for b in began if b is not None), self.now)
            if total > most:
                total, self.clipped = most, self.clipped + 1
        return total

    def log(self, worker: str, job: Job) -> None:
        if self.clipped:
            log.warning(
                "worker %s claimed more CPU or GPU time than the lease lasted for %d slices "
                "of job %s: clipped to the lease",
                worker,
                self.clipped,
                job.id,
            )


def _meter_results(
    job: Job,
    payee: User,
    worker: str,
    kept: list[tuple[int, Any]],
    clipped: _Clipped,
    claims: Mapping[str, Mapping[int, float]],
) -> dict[str, float]:
    """Meter a batch's kept results: their claimed times (clipped to their leases, returned by
    name) and bytes."""
    times = {name: clipped.total(by_slice) for name, by_slice in claims.items()}
    _meter(job, payee, **times, bytes_out=_encoded_bytes([value for _, value in kept]))
    clipped.log(worker, job)
    return times


def _encoded_bytes(values: list[Any]) -> int:
    """What values weigh on the wire: each one's JSON, and the blobs each references. (The JSON
    of the list less its brackets and separators: one encoding for thousands of values.)"""
    if not values:
        return 0
    text = len(_to_json(values).encode()) - 2 - len(_SEPARATOR) * (len(values) - 1)
    return text + sum(ref.size for value in values for ref in references(value))


def _meter(job: Job, user: User | None, **amounts: float) -> None:
    """Add metered amounts (cpu_ms, gpu_ms, bytes_in, bytes_out) to the job's totals and to
    those of `user`'s workers."""
    amounts = {name: amount for name, amount in amounts.items() if amount}
    if not amounts:
        return
    Job.objects.filter(pk=job.pk).update(**{name: F(name) + n for name, n in amounts.items()})
    for name, amount in amounts.items():
        setattr(job, name, getattr(job, name) + amount)
    if user is None:
        return
    added = {name: F(name) + amount for name, amount in amounts.items()}
    if not WorkerTally.objects.filter(user=user).update(**added):
        WorkerTally.objects.get_or_create(user=user)
        WorkerTally.objects.filter(user=user).update(**added)


def _lease_ms(leased_at: datetime | None, now: datetime) -> float:
    """How long a lease has lasted so far, in milliseconds (nothing when its start is unknown)."""
    if leased_at is None:
        return 0.0
    return max((now - leased_at).total_seconds() * 1000, 0.0)


def _count_computed(job: Job, count: int) -> None:
    if count:
        Job.objects.filter(pk=job.pk).update(computed=F("computed") + count)
        job.computed += count


def _store_errors(
    job: Job, held: dict[int, int], errors: list[dict[str, Any]], outcome: BatchOutcome
) -> None:
    for error in errors:
        if error["slice"] in held:
            row = Slice.objects.get(pk=held[error["slice"]])
            if error.get("name") == policy.NO_PROGRESS_ERROR_NAME:
                _stalled(job, row, outcome)
            else:
                _failed(job, row, error, outcome)


def _failed(job: Job, row: Slice, error: dict[str, Any], outcome: BatchOutcome) -> None:
    """The work function raised: retry once (preferably elsewhere), then cancel the job."""
    row.errors += 1
    row.error = {k: error.get(k, "") for k in ("name", "message", "traceback")}
    outcome.errors.append({"slice": row.number, **row.error})
    if policy.gives_up(row.errors):
        job.failed += 1
        why = policy.too_many_errors_reason(
            row.number, row.errors, row.error["name"], row.error["message"]
        )
        outcome.cancelled = (policy.TOO_MANY_ERRORS, why)
        _give_back(row, status=SliceStatus.FAILED)
    else:
        _give_back(row, retry_elsewhere=True)


def _stalled(job: Job, row: Slice, outcome: BatchOutcome) -> None:
    """The sandbox stopped a slice that made no progress: requeue once, then cancel."""
    row.noprogress += 1
    outcome.noprogress.append({"slice": row.number, "seconds": job.progress_timeout})
    if policy.gives_up(row.noprogress):
        reason = policy.no_progress_reason(row.number, job.progress_timeout)
        outcome.cancelled = (policy.NO_PROGRESS, reason)
        _give_back(row, status=SliceStatus.FAILED)
    else:
        _give_back(row, retry_elsewhere=True)


def _give_back(row: Slice, *, status: str = SliceStatus.NEW, retry_elsewhere: bool = False) -> None:
    if retry_elsewhere:
        row.last_failed_worker = row.worker
        row.retry_after = timezone.now() + timedelta(seconds=settings.RETRY_ELSEWHERE_SECONDS)
    row.status, row.worker, row.lease_expires = status, "", None
    row.save()


def _pay(
    job: Job,
    paid: Counter[verification.Payee],
    batch_key: str,
    sender: User,
    outcome: BatchOutcome,
    times: Mapping[str, float] | None = None,
) -> None:
    """Pay the offer for each accepted result (a market-value job: the batch's metered `times`,
    cpu_ms and gpu_ms, at its rates, at most what its escrow holds), all payees in one ledger
    transaction less the commission (payouts.pay_workers); the batch's `sender` learns what it
    earned."""
    amounts = {payee: job.offer * count for payee, count in paid.items() if count}
    metered = {"cpu_ms": 0.0, "gpu_ms": 0.0, **(times or {})}
    if job.cpu_rate:  # never verified: the sender is the one payee
        amounts = {
            p: pricing.payable(
                job, p, pricing.cost_of(job, metered["cpu_ms"], n, metered["gpu_ms"])
            )
            for p, n in paid.items()
            if n
        }
    earned = payouts.pay_workers(
        job,
        amounts,
        idempotency_key=batch_key,
        memo=f"{paid.total()} results of job {job.id}",
        results=paid,
    )
    outcome.earned = sum(a for p, a in earned.items() if p.user_id == sender.pk)


# --- cancel and finish ------------------------------------------------------------------------

OWNER_CANCELLED = "cancelled by its owner"


@transaction.atomic
def cancel_job(*, job_id: str, identity: str, code: str = "ECANCELLED", reason: str = "") -> Job:
    """Stop a job's dispatch and refund its escrow; only the identity that deployed it may."""
    job = _locked_job_of_identity(job_id, identity)
    _cancel(job, code=code, reason=reason or OWNER_CANCELLED)
    return job


@transaction.atomic
def cancel_job_of_owner(*, job_id: str, owner: User, reason: str = "") -> tuple[Job, bool]:
    """Cancel from the portal's Jobs tab: as cancel_job, but for the user who owns the job.

    Returns the job and whether this cancelled it (False when it had already ended).
    """
    job = Job.objects.select_for_update().filter(pk=job_id, owner=owner).first()
    if job is None:
        raise SchedulerError("ENOJOB", f"no job {job_id} of this user")
    return job, _cancel(job, code="ECANCELLED", reason=reason or OWNER_CANCELLED)


def cancel_locked_job(job: Job, *, code: str, reason: str) -> bool:
    """Cancel a running job whose row the caller's transaction holds locked, as the owner's
    cancel does (announced, refunded); False when it had ended."""
    return _cancel(job, code=code, reason=reason)


def _cancel(job: Job, *, code: str, reason: str) -> bool:
    """Cancel a running job and announce it, once, whoever asked; False when it had ended."""
    if job.status != JobStatus.RUNNING:
        return False
    _close_job(job, status=JobStatus.CANCELLED, code=code, reason=reason)
    notify.job_cancelled(job)
    return True


def _close_job(job: Job, *, status: str, code: str = "", reason: str = "") -> None:
    job.status = status
    job.cancel_code, job.cancel_reason = code, reason[:200]
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "cancel_code", "cancel_reason", "finished_at", "failed"])
    Slice.objects.filter(job=job, status=SliceStatus.LEASED).update(
        status=SliceStatus.NEW, worker="", lease_expires=None
    )
    if job.offer or job.cpu_rate:  # a free job never had an escrow
        bank.refund_escrow(
            escrow=bank.escrow_for_job(job.id),
            target=bank.account_for_address(job.payer),
            idempotency_key=f"refund:{job.id}",
        )


# --- worker connections -----------------------------------------------------------------------


def connect_worker(
    *, worker: str, user: User, hello: WorkerHello, anonymous: bool = False
) -> tuple[str, Capabilities]:
    """Record a connected worker as its hello describes it; returns the address its results
    are paid into and what it may be handed. That address is the hello's `payment_address`
    (any account of the portal) or else the user's default account (made on first use); an
    `anonymous` worker has none, so it must name one. A wrong compute group or payment address
    refuses the hello (EINVALID) before anything is recorded."""
    groups = groups_for(credentials(hello.compute_groups))
    address = _payee_address(user, hello.payment_address, anonymous)
    capabilities = Capabilities(
        webgpu=hello.capabilities.get("webgpu") is True,
        offscreen_canvas=hello.capabilities.get("offscreenCanvas") is True,
        compute_groups=frozenset(group.pk for group in groups),
        public_group=not hello.leave_public_group,
        jobs=frozenset(hello.jobs),
        min_wage=to_units(hello.min_wage) if hello.min_wage else 0,
    )
    WorkerConnection.objects.update_or_create(
        id=worker,
        defaults={
            "user": user,
            "cores": hello.cores,
            "webgpu": capabilities.webgpu,
            "offscreen_canvas": capabilities.offscreen_canvas,
        },
    )
    return address, capabilities


def _payee_address(user: User, named: str | None, anonymous: bool) -> str:
    if named is not None:
        return worker_credentials.named_payee(named)
    if anonymous:
        raise SchedulerError("EINVALID", "an anonymous worker must name its payment_address")
    return ensure_default_account(user=user).address


def worker_disconnected(*, worker: str) -> int:
    """Forget the worker; the slices it still held go back to the queue, each a lease lost
    (a worker that stops hands its slices back first). Returns how many went back."""
    returned = _requeue("worker = %s", [worker])
    WorkerConnection.objects.filter(id=worker).delete()
    return returned
