"""The websocket messages of docs/protocol.md as pydantic models: one schema per message."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

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


class RangeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["range"]
    start: int | float
    end: int | float
    step: int | float = 1

    @field_validator("start", "end", "step")
    @classmethod
    def finite(cls, value: float) -> float:
        if (isinstance(value, float) and value != value) or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
        return value


class ValuesInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["values"]
    values: list[Json] = Field(min_length=1)


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
    input: Annotated[RangeInput | ValuesInput, Field(discriminator="kind")]
    slice_payment_offer: Decimal = Field(ge=0, max_digits=20, decimal_places=9)
    payment: Payment
    public: dict[str, str] = Field(default_factory=dict)


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
    ClientHello | Deploy | Subscribe | FetchResults | Cancel, Field(discriminator="type")
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
