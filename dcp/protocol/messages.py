"""Every message of both websockets (docs/protocol.md) as a pydantic model, in both directions.

One name per concept on the wire: a slice is `slice` (its number), what it receives is `datum`,
what it returns is `value`; the work function is `work` {language, source}. Requests carry an
`id` that their reply echoes. The server parses what it receives with `client_requests` and
`worker_requests` (strictly); the client parses what it receives with `client_replies` (an
unknown field is ignored, so that a newer scheduler may say more); `worker_replies` is the
same for a worker. `frame()` gives the dict to send.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from .credits import credits_text, parse_credits, written_as_number
from .ids import check_job_id
from .limits import (
    MAX_CONSOLE_CHARS,
    MAX_SLICES_PER_BATCH,
    MAX_SOURCE_CHARS,
    MAX_WORKER_JOBS,
    PROTOCOL_VERSION,
)

Address = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$")]
RequestId = int | str | None
JobId = Annotated[str, Field(max_length=32)]
WellFormedJobId = Annotated[str, AfterValidator(check_job_id)]
WORKER_TOKEN_MAX_CHARS = 100  # a worker token is `dcpw_<12 hex>_<43 base64url>`: 61
Ref = Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Json = Any
Language = Literal["python", "js"]  # the work-function runtimes every worker has
LANGUAGES: tuple[str, ...] = get_args(Language)


class Shape(BaseModel):
    """A part of a message: strict about unknown keys, so a typo is an error, not a default."""

    model_config = ConfigDict(extra="forbid")


# What the scheduler sends is read leniently: a newer scheduler may add fields, and a client or
# worker already installed must not fail on them. What the scheduler receives stays strict.
SENT_BY_THE_SCHEDULER = ConfigDict(extra="ignore")


class Message(Shape):
    """A frame: `type` names it; `frame()` is what goes over the wire."""

    def frame(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Request(Message):
    """A frame that asks for a reply; the reply echoes its `id`."""

    id: RequestId = None


# --- shared parts -------------------------------------------------------------------------


def _finite(value: float) -> float:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValueError("must be a finite number")
    return value


FiniteNumber = Annotated[int | float, AfterValidator(_finite)]
# Credits go over the wire as plain decimal text ("0.000000001", never "1E-9"): the cheque
# texts quote them as sent.
Credits = Annotated[
    Decimal,
    BeforeValidator(written_as_number),
    PlainSerializer(credits_text, return_type=str, when_used="json"),
]


class Work(Shape):
    """A work function: its runtime and its source."""

    language: Language = "python"
    source: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS)


class RangeSpec(Shape):
    start: FiniteNumber
    end: FiniteNumber
    step: FiniteNumber = 1


class RangeInput(RangeSpec):
    kind: Literal["range"]
    group: int | None = Field(default=None, ge=1, le=1_000_000)


class ProductInput(Shape):
    kind: Literal["product"]
    ranges: list[RangeSpec] = Field(min_length=1, max_length=8)


class ValuesInput(Shape):
    kind: Literal["values"]
    values: list[Json] = Field(max_length=1_000_000)


InputForm = Annotated[RangeInput | ProductInput | ValuesInput, Field(discriminator="kind")]


class Environment(Shape):
    webgpu: bool = False
    offscreenCanvas: bool = False


MAX_JOB_PACKAGES = 200  # wheels, and Pyodide packages, one job requires at most
# A distribution's name as PEP 508 writes it (docs/packages.md).
PackageName = Annotated[
    str, Field(max_length=100, pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
]


class Package(Shape):
    """A pure-Python wheel in the portal's store (`sha256`, `size` bytes) that the job's sandbox
    installs before its first slice; `file` is the wheel's file name (name-version-tags.whl)."""

    name: PackageName
    version: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.!+]+$")
    file: str = Field(
        max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.!+]*-[A-Za-z0-9_.!+-]+-none-any\.whl$"
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=1)


class JobFiles(Shape):
    """A job's files (`job.fs`): a zip archive in the portal's store (`sha256`, `size` bytes)
    that the sandbox unpacks, read-only, as the work function's current directory."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=1)


class Requirements(Shape):
    """DCP's requirements object; an unknown key is an error, never silently dropped.

    `packages` and `pyodide` are what the job imports besides the standard library (the
    client's `requires`, REST's `packages`; docs/packages.md): wheels from the portal's store,
    and the names of Pyodide's own packages, which the sandbox loads with `loadPackage`. `fs`
    is the job's files (JobFiles)."""

    environment: Environment = Field(default_factory=Environment)
    discrete: bool = False
    packages: list[Package] = Field(default_factory=list, max_length=MAX_JOB_PACKAGES)
    pyodide: list[PackageName] = Field(default_factory=list, max_length=MAX_JOB_PACKAGES)
    fs: JobFiles | None = None

    @model_validator(mode="after")
    def _each_once(self) -> Requirements:
        files = [package.file for package in self.packages]
        for listed, what in ((files, "packages"), (self.pyodide, "pyodide")):
            twice = sorted({item for item in listed if listed.count(item) > 1})
            if twice:
                raise ValueError(f"{what} lists {twice[0]} more than once")
        return self


class Public(Shape):
    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=2000)
    link: str = Field(default="", max_length=500, pattern=r"^(https?://\S+)?$")


MAX_COMPUTE_GROUPS = 16  # groups one job is deployed into, or one worker joins, at most


class GroupCredential(Shape):
    """A compute group's join key and join secret (DCP's names): deploying into the group or
    joining it as a worker needs both. The secret is checked, never stored or echoed."""

    joinKey: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    joinSecret: str = Field(min_length=1, max_length=200)


ComputeGroups = Annotated[list[GroupCredential], Field(max_length=MAX_COMPUTE_GROUPS)]


class Payment(Shape):
    account: Address
    max_total: Credits = Field(ge=0)
    signature: str = Field(max_length=200)


class BatchPayment(Shape):
    max_total: Credits = Field(ge=0)
    signature: str = Field(max_length=200)


MAX_MARKET_MULTIPLIER = 100.0


class MarketValue(Shape):
    """Pay per measured CPU-second at the market price (docs/economy.md) times `multiplier`,
    instead of a fixed offer per slice; the deploy's cheque (`payment.max_total`) is the budget
    moved into the escrow, and `escrow` requests add to it."""

    multiplier: float = Field(default=1.0, gt=0, le=MAX_MARKET_MULTIPLIER)


MAX_QUORUM = 5  # results that must agree, at most
MAX_VERIFY_RESULTS = 9  # results one slice may need before verification gives up


class Verify(Shape):
    """Redundant computing (dcp/protocol/verify.py): each slice is computed by workers of
    `quorum` distinct users and accepted when that many results agree; disagreement sends it to
    further workers, up to `max_results` results. `tolerance` compares floats (relative and
    absolute). `adaptive`: results of trusted workers are accepted alone except for a
    `spot_check` fraction, which is replicated."""

    quorum: int = Field(default=2, ge=2, le=MAX_QUORUM)
    max_results: int | None = Field(default=None, ge=2, le=MAX_VERIFY_RESULTS)
    tolerance: float = Field(default=0.0, ge=0, le=1)
    adaptive: bool = False
    spot_check: float = Field(default=0.1, gt=0, le=1)

    @model_validator(mode="after")
    def _cap(self) -> Verify:
        if self.max_results is None:
            self.max_results = min(self.quorum + 2, MAX_VERIFY_RESULTS)
        if self.max_results < self.quorum:
            raise ValueError(
                f"max_results ({self.max_results}) must be at least the quorum ({self.quorum})"
            )
        return self

    @property
    def replicas(self) -> int:
        """How many results of each slice are paid: the quorum (what the escrow covers)."""
        return self.quorum


class JobStatus(Shape):
    """Where a job stands: `distributed` slices handed out, `computed` with a result."""

    model_config = ConfigDict(extra="allow")  # newer schedulers may say more
    total: int
    distributed: int
    computed: int
    failed: int
    status: str
    open: bool = False
    waiting: str | None = Field(default=None, exclude_if=lambda value: value is None)
    # For jobs that asked for verification: {"quorum", "pending", "disputed", "rejected"}.
    verification: dict[str, int] | None = Field(
        default=None, exclude_if=lambda value: value is None
    )
    # Seconds of GPU time the job's kept results used (DCP's name); absent from an older
    # scheduler.
    totalGPUTime: float | None = Field(default=None, ge=0, exclude_if=lambda value: value is None)
    # Metered (docs/protocol.md, "Metering"): seconds its kept results took in their sandboxes
    # (DCP's name), and the bytes of its slices' data handed out and of its kept results, blobs
    # included; absent from an older scheduler.
    totalCPUTime: float | None = Field(default=None, ge=0, exclude_if=lambda value: value is None)
    bytesIn: int | None = Field(default=None, ge=0, exclude_if=lambda value: value is None)
    bytesOut: int | None = Field(default=None, ge=0, exclude_if=lambda value: value is None)


class JobInfo(Shape):
    """What a client needs to handle a job it did not deploy itself (`Job.attach`)."""

    model_config = SENT_BY_THE_SCHEDULER

    work: Work
    args: list[Json] = Field(default_factory=list)
    input: dict[str, Any]  # the input form; a `values` job gives {"kind": "values"} only
    slice_payment_offer: str
    open: bool = False


class SliceValue(Shape):
    slice: int = Field(ge=1)
    value: Json = None


class SliceError(Shape):
    slice: int = Field(ge=1)
    name: str = Field(default="Error", max_length=200)
    message: str = Field(default="", max_length=10_000)
    traceback: str = Field(default="", max_length=100_000)


class Error(Message):
    """The reply to a refused request (or an unsolicited complaint, with id null)."""

    model_config = SENT_BY_THE_SCHEDULER

    type: Literal["error"] = "error"
    id: RequestId = None
    code: str
    message: str


# --- client socket: client -> scheduler --------------------------------------------------


class ClientHello(Request):
    type: Literal["hello"]
    version: int = PROTOCOL_VERSION
    identity: Address
    signature: str = Field(max_length=200)


class Deploy(Request):
    type: Literal["deploy"]
    ref: Ref
    work: Work
    args: list[Json] = Field(default_factory=list)
    input: InputForm
    # Within what the ledger holds (a cheque's max_total may say more: offer x slices).
    slice_payment_offer: Annotated[Credits, AfterValidator(parse_credits)] = Field(
        ge=0, max_digits=20, decimal_places=9
    )
    payment: Payment
    public: Public = Field(default_factory=lambda: Public())
    open: bool = False
    requirements: Requirements = Field(default_factory=Requirements)
    progress_timeout: int = Field(default=60, ge=1, le=24 * 3600)
    verify: Verify | None = None
    # Only workers that joined one of these groups get the job; none: the public group.
    compute_groups: ComputeGroups = Field(default_factory=list)
    # Priced per measured CPU-second at the market value (slice_payment_offer is then 0).
    market_value: MarketValue | None = None


class AddSlices(Request):
    type: Literal["add_slices"]
    job: JobId
    ref: Ref
    values: list[Json] = Field(min_length=1, max_length=MAX_SLICES_PER_BATCH)
    payment: BatchPayment


class CloseJob(Request):
    type: Literal["close"]
    job: JobId


class Escrow(Request):
    """Add credits to a running job's escrow (a job paused for `nofunds` resumes); the batch
    cheque's text names the job and `ref`, which makes the request idempotent."""

    type: Literal["escrow"]
    job: JobId
    ref: Ref
    payment: BatchPayment


class StatusRequest(Request):
    type: Literal["status"]
    job: JobId


class ListJobs(Request):
    type: Literal["jobs"]


class Subscribe(Request):
    type: Literal["subscribe"]
    job: JobId


class FetchResults(Request):
    type: Literal["results"]
    job: JobId
    start: int = Field(ge=1)
    end: int = Field(ge=1)


class FetchInputs(Request):
    """The input values of slices start..end of a `values` job (for an attached handle)."""

    type: Literal["inputs"]
    job: JobId
    start: int = Field(ge=1)
    end: int = Field(ge=1)


class Cancel(Request):
    type: Literal["cancel"]
    job: JobId
    reason: str = Field(default="", max_length=200)


ClientRequest = Annotated[
    ClientHello
    | Deploy
    | Subscribe
    | FetchResults
    | FetchInputs
    | Cancel
    | AddSlices
    | CloseJob
    | StatusRequest
    | Escrow
    | ListJobs,
    Field(discriminator="type"),
]


# --- client socket: scheduler -> client --------------------------------------------------


class Challenge(Message):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["challenge"] = "challenge"
    version: int = PROTOCOL_VERSION
    nonce: str


class ClientWelcome(Request):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["welcome"] = "welcome"
    identity: str
    user: str
    first_dev: bool


class Accepted(Request):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["accepted"] = "accepted"
    job: str
    total: int


class Added(Request):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["added"] = "added"
    job: str
    total: int


class Closed(Request):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["closed"] = "closed"
    job: str
    total: int


class Escrowed(Request):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["escrowed"] = "escrowed"
    job: str
    escrow: str  # credits the job's escrow holds now


class StatusReply(Request):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["status"] = "status"
    job: str
    status: JobStatus
    info: JobInfo | None = Field(default=None, exclude_if=lambda value: value is None)


class JobsReply(Request):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["jobs"] = "jobs"
    jobs: list[dict[str, Any]]


class Subscribed(Request):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["subscribed"] = "subscribed"
    job: str
    status: JobStatus
    info: JobInfo | None = Field(default=None, exclude_if=lambda value: value is None)


# A results page row as docs/protocol.md gives it: [slice, value].
ResultRow = tuple[int, Json]


class ResultsReply(Request):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["results"] = "results"
    job: str
    results: list[ResultRow | SliceValue]
    # The first slice of the asked range this page did not reach (a page stops before the
    # frame limit); ask again from there. Absent when the page covers the whole range.
    next: int | None = Field(default=None, exclude_if=lambda value: value is None)


class InputsReply(Request):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["inputs"] = "inputs"
    job: str
    start: int
    values: list[Json]


class Cancelled(Request):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["cancelled"] = "cancelled"
    job: str


EventName = Literal[
    "status",
    "result",
    "error",
    "console",
    "noprogress",
    "complete",
    "cancel",
    "duplicate-result",
    "rejected",
    "estimated",
    "nofunds",
]


class Event(Message):
    """Something happened to a job: pushed to every client watching it (no `id`)."""

    model_config = SENT_BY_THE_SCHEDULER

    type: Literal["event"] = "event"
    job: str
    event: EventName
    data: Json = None


ClientReply = Annotated[
    Challenge
    | ClientWelcome
    | Accepted
    | Added
    | Closed
    | Escrowed
    | StatusReply
    | JobsReply
    | Subscribed
    | ResultsReply
    | InputsReply
    | Cancelled
    | Event
    | Error,
    Field(discriminator="type"),
]


# --- worker socket: worker -> scheduler --------------------------------------------------


class WorkerHello(Request):
    type: Literal["hello"]
    version: int = PROTOCOL_VERSION
    cores: int = Field(default=1, ge=1, le=256)
    capabilities: dict[str, Any] = Field(default_factory=dict)
    # The compute groups whose jobs this worker takes, besides the public group's (unless it
    # leaves that).
    compute_groups: ComputeGroups = Field(default_factory=list)
    leave_public_group: bool = False
    # Only these jobs, where the worker may take them (its groups still decide); none: any job.
    jobs: list[WellFormedJobId] = Field(default_factory=list, max_length=MAX_WORKER_JOBS)
    # A worker token (the portal's Workers page) for a worker without a signed-in session;
    # kept out of the message's repr, so it is never logged.
    token: str | None = Field(default=None, max_length=WORKER_TOKEN_MAX_CHARS, repr=False)
    # The account its results are paid into (any account of the portal); none: the user's
    # default account. An anonymous worker must name one.
    payment_address: Address | None = None
    # The least it works for, in credits per CPU-second of its sandboxes: jobs whose metered
    # pay comes to less are not handed to it (docs/protocol.md, "Minimum wage"); none: any.
    min_wage: Annotated[Credits, AfterValidator(parse_credits)] | None = Field(
        default=None, ge=0, max_digits=20, decimal_places=9
    )


class Ready(Request):
    type: Literal["ready"]
    capacity: int = Field(ge=0, le=10_000)


class Progress(Request):
    type: Literal["progress"]
    job: JobId
    slices: list[int] = Field(max_length=10_000)


ConsoleLevel = Literal["log", "info", "warn", "error", "debug"]


class Console(Request):
    type: Literal["console"]
    job: JobId
    slice: int | None = None
    level: ConsoleLevel = "log"
    message: str = Field(max_length=MAX_CONSOLE_CHARS)


class SliceResult(SliceValue):
    ms: float | None = Field(default=None, ge=0)  # how long the slice took, for task sizing
    # Milliseconds of GPU time the slice used (queue submit to the GPU reporting the work
    # done), metered into the job's totalGPUTime.
    gpu_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class Results(Request):
    type: Literal["result"]
    job: JobId
    results: list[SliceResult] = Field(default_factory=list, max_length=10_000)
    errors: list[SliceError] = Field(default_factory=list, max_length=10_000)


class Return(Request):
    type: Literal["return"]
    job: JobId | None = None
    slices: list[int] | None = Field(default=None, max_length=10_000)


WorkerRequest = Annotated[
    WorkerHello | Ready | Progress | Console | Results | Return, Field(discriminator="type")
]


# --- worker socket: scheduler -> worker --------------------------------------------------


class WorkerWelcome(Request):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["welcome"] = "welcome"
    worker: str
    address: str
    # The join keys of the compute groups joined, and whether it serves the public group;
    # sent only when they say more than the defaults (no group, the public group).
    compute_groups: list[str] = Field(default_factory=list, exclude_if=lambda keys: not keys)
    public_group: bool = Field(default=True, exclude_if=lambda public: public)
    # The jobs it is limited to, sent only when its hello named some.
    jobs: list[str] = Field(default_factory=list, exclude_if=lambda jobs: not jobs)


class Waiting(Message):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["waiting"] = "waiting"


class TaskJob(Shape):
    """The job a task's slices belong to: a worker compiles its work function once."""

    model_config = SENT_BY_THE_SCHEDULER

    id: str
    language: Language
    source: str
    args: list[Json]
    # What the sandbox installs before the first slice (Requirements; docs/packages.md): wheels
    # from the portal's store and Pyodide's own packages by name. Left out when there are none.
    packages: list[Package] = Field(default_factory=list, exclude_if=lambda packages: not packages)
    pyodide: list[str] = Field(default_factory=list, exclude_if=lambda names: not names)
    fs: JobFiles | None = Field(default=None, exclude_if=lambda files: files is None)


class TaskSlice(Shape):
    model_config = SENT_BY_THE_SCHEDULER
    slice: int
    datum: Json = None


class Task(Message):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["task"] = "task"
    task: str
    job: TaskJob
    slices: list[TaskSlice]
    lease_seconds: int
    progress_timeout: int
    # The worker's credential to store this job's big results in the portal's store
    # (`Authorization: DCP-Worker <ticket>`, docs/store.md); the latest one of a job counts.
    upload_ticket: str = Field(default="", repr=False, exclude_if=lambda ticket: not ticket)


class Abort(Message):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["abort"] = "abort"
    job: str


class Ack(Request):
    model_config = SENT_BY_THE_SCHEDULER
    type: Literal["ack"] = "ack"
    accepted: int
    earned: str


WorkerReply = Annotated[
    WorkerWelcome | Waiting | Task | Abort | Ack | Error, Field(discriminator="type")
]

client_requests: TypeAdapter[Any] = TypeAdapter(ClientRequest)
client_replies: TypeAdapter[Any] = TypeAdapter(ClientReply)
worker_requests: TypeAdapter[Any] = TypeAdapter(WorkerRequest)
worker_replies: TypeAdapter[Any] = TypeAdapter(WorkerReply)


def describe(error: ValidationError) -> str:
    """One line naming the first bad field: `deploy.input.end: Field required`."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])
