"""The websocket messages of docs/protocol.md as pydantic models: one schema per message."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

PROTOCOL_VERSION = 1
Address = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$")]
RequestId = int | str | None
Json = Any


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)
    id: RequestId = None


# --- client socket ---


class ClientHello(Message):
    type: Literal["hello"]
    version: int = PROTOCOL_VERSION
    identity: Address
    signature: str = Field(max_length=200)


class Work(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: Literal["python", "js"] = "python"
    source: str = Field(min_length=1, max_length=1_000_000)


def _finite(value: float) -> float:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValueError("must be a finite number")
    return value


FiniteNumber = Annotated[int | float, AfterValidator(_finite)]


class RangeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: FiniteNumber
    end: FiniteNumber
    step: FiniteNumber = 1


class RangeInput(RangeSpec):
    kind: Literal["range"]
    group: int | None = Field(default=None, ge=1, le=1_000_000)


class ProductInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["product"]
    ranges: list[RangeSpec] = Field(min_length=1, max_length=8)


class ValuesInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["values"]
    values: list[Json] = Field(max_length=1_000_000)


class Environment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webgpu: bool = False
    offscreenCanvas: bool = False


class Requirements(BaseModel):
    """DCP's requirements object; an unknown key is an error, never silently dropped."""

    model_config = ConfigDict(extra="forbid")
    environment: Environment = Field(default_factory=Environment)
    discrete: bool = False


class Public(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=2000)
    link: str = Field(default="", max_length=500, pattern=r"^(https?://\S+)?$")


class Payment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account: Address
    max_total: Decimal = Field(ge=0)
    signature: str = Field(max_length=200)


class Deploy(Message):
    type: Literal["deploy"]
    ref: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    work: Work
    args: list[Json] = Field(default_factory=list)
    input: Annotated[RangeInput | ProductInput | ValuesInput, Field(discriminator="kind")]
    slice_payment_offer: Decimal = Field(ge=0, max_digits=20, decimal_places=9)
    payment: Payment
    public: Public = Field(default_factory=lambda: Public())
    open: bool = False
    requirements: Requirements = Field(default_factory=Requirements)
    progress_timeout: int = Field(default=60, ge=1, le=24 * 3600)


class BatchPayment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_total: Decimal = Field(ge=0)
    signature: str = Field(max_length=200)


class AddSlices(Message):
    type: Literal["add_slices"]
    job: str = Field(max_length=32)
    ref: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    values: list[Json] = Field(min_length=1, max_length=100_000)
    payment: BatchPayment


class CloseJob(Message):
    type: Literal["close"]
    job: str = Field(max_length=32)


class JobStatusRequest(Message):
    type: Literal["status"]
    job: str = Field(max_length=32)


class ListJobs(Message):
    type: Literal["jobs"]


class Subscribe(Message):
    type: Literal["subscribe"]
    job: str = Field(max_length=32)


class FetchResults(Message):
    type: Literal["results"]
    job: str = Field(max_length=32)
    start: int = Field(ge=1)
    end: int = Field(ge=1)


class Cancel(Message):
    type: Literal["cancel"]
    job: str = Field(max_length=32)
    reason: str = Field(default="", max_length=200)


ClientMessage = Annotated[
    ClientHello
    | Deploy
    | Subscribe
    | FetchResults
    | Cancel
    | AddSlices
    | CloseJob
    | JobStatusRequest
    | ListJobs,
    Field(discriminator="type"),
]


# --- worker socket ---


class WorkerHello(Message):
    type: Literal["hello"]
    version: int = PROTOCOL_VERSION
    cores: int = Field(default=1, ge=1, le=256)
    capabilities: dict[str, Any] = Field(default_factory=dict)


class Ready(Message):
    type: Literal["ready"]
    capacity: int = Field(ge=0, le=10_000)


class Progress(Message):
    type: Literal["progress"]
    job: str = Field(max_length=32)
    slices: list[int] = Field(max_length=10_000)


class Console(Message):
    type: Literal["console"]
    job: str = Field(max_length=32)
    slice: int | None = None
    level: Literal["log", "info", "warn", "error", "debug"] = "log"
    message: str = Field(max_length=10_000)


class SliceResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slice: int = Field(ge=1)
    value: Json = None
    ms: float | None = Field(default=None, ge=0)


class SliceFailure(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slice: int = Field(ge=1)
    name: str = Field(default="Error", max_length=200)
    message: str = Field(default="", max_length=10_000)
    traceback: str = Field(default="", max_length=100_000)


class Results(Message):
    type: Literal["result"]
    job: str = Field(max_length=32)
    results: list[SliceResult] = Field(default_factory=list, max_length=10_000)
    errors: list[SliceFailure] = Field(default_factory=list, max_length=10_000)


class Return(Message):
    type: Literal["return"]
    job: str | None = Field(default=None, max_length=32)
    slices: list[int] | None = Field(default=None, max_length=10_000)


WorkerMessage = Annotated[
    WorkerHello | Ready | Progress | Console | Results | Return, Field(discriminator="type")
]

client_messages: TypeAdapter[Any] = TypeAdapter(ClientMessage)
worker_messages: TypeAdapter[Any] = TypeAdapter(WorkerMessage)


def describe(error: ValidationError) -> str:
    """One line naming the first bad field: `deploy.input.end: Field required`."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])
