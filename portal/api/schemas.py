"""Request and response bodies of the REST API, as pydantic models.

Ninja validates requests with these same models and generates the OpenAPI schema from them, so
the published schema cannot drift from what the code accepts. Field names follow dcp-rest
(camelCase); requirements, public metadata, languages, limits and the credit rule are the
websocket protocol's own (dcp.protocol).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from dcp.protocol.credits import CREDIT_DECIMALS, MAX_CREDITS, written_as_number
from dcp.protocol.limits import MAX_SLICES_PER_BATCH, MAX_SOURCE_CHARS
from dcp.protocol.messages import (
    MAX_COMPUTE_GROUPS,
    MAX_JOB_PACKAGES,
    GroupCredential,
    Language,
    Package,
    PackageName,
    Public,
    Requirements,
    Verify,
)

Json = Any


SliceValue = Annotated[Any, WithJsonSchema({"description": "Any JSON value."})]
MAX_SLICES_PER_REQUEST = MAX_SLICES_PER_BATCH
JobId = Annotated[str, Field(description="The job's id, as POST /job returned it.")]
Offer = Annotated[
    Decimal,
    BeforeValidator(written_as_number),
    Field(
        ge=0,
        le=int(MAX_CREDITS),
        max_digits=19,
        decimal_places=CREDIT_DECIMALS,
        description="Credits per slice.",
    ),
]


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests -----------------------------------------------------------------------------


class WorkIn(ApiModel):
    language: Language = Field(
        default="python", description="Python runs in Pyodide; js is a JavaScript function."
    )
    function: str = Field(
        min_length=1,
        max_length=MAX_SOURCE_CHARS,
        description="Source of the work function, called once per slice as work(datum, *args).",
    )


class AccountIn(ApiModel):
    address: str = Field(max_length=44, description="An account key's address, with or without 0x.")


class JobIn(ApiModel):
    slices: list[SliceValue] = Field(
        default_factory=list,
        max_length=MAX_SLICES_PER_REQUEST,
        description="Input values, one per slice (more may follow: every REST job is open).",
    )
    work: WorkIn
    args: list[Json] = Field(default_factory=list, max_length=1000)
    requirements: Requirements = Field(default_factory=Requirements)
    packages: list[PackageName | Package] = Field(
        default_factory=list,
        max_length=MAX_JOB_PACKAGES,
        description="What the work function imports besides the standard library (dcp-rest's "
        "packages): a name is one of the portal's Pyodide packages (numpy, ...); an object "
        "{name, version, file, sha256, size} is a pure-Python wheel you stored first "
        "(PUT /store/<sha256> with your API key). Both end up in requirements.pyodide and "
        "requirements.packages; a name the portal's Pyodide lacks is 400 ENOPACKAGE, a wheel "
        "you did not store 400 ENOBLOB, an unsafe one 400 EUNSAFEWHEEL (docs/packages.md).",
    )
    public: Public = Field(default_factory=lambda: Public())
    verify: Verify | None = Field(
        default=None,
        description="Result verification: each slice is computed by workers of `quorum` "
        "distinct users and accepted when their results agree; the escrow covers `quorum` "
        "results a slice. Fields as the websocket protocol's (quorum, max_results, tolerance, "
        "adaptive, spot_check).",
    )
    computeGroups: list[GroupCredential] = Field(
        default_factory=list,
        max_length=MAX_COMPUTE_GROUPS,
        description="The compute groups to deploy into, each as its joinKey and joinSecret: "
        "only workers that joined one of them get the job. Empty (the default): the public "
        "group. An unknown joinKey or a wrong joinSecret is 400 EINVALID.",
    )
    slicePaymentOffer: Offer | Literal["MARKET_VALUE"] = Field(
        default="MARKET_VALUE",
        description="Credits paid per slice (a number or decimal string), or MARKET_VALUE.",
    )
    account: AccountIn | None = Field(
        default=None,
        description="The paying account; defaults to the API key's account, or with Basic "
        "auth to your default account.",
    )


class SlicesIn(ApiModel):
    slices: list[SliceValue] = Field(min_length=1, max_length=MAX_SLICES_PER_REQUEST)


class CancelIn(ApiModel):
    reason: str = Field(default="", max_length=200)


# --- responses ----------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable error code such as EINVALID or ENOFUNDS.")
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


class JobCreated(BaseModel):
    jobId: JobId


class JobStatusOut(BaseModel):
    jobId: JobId
    status: Literal["running", "finished", "cancelled"]
    open: bool = Field(description="The job still takes slices (POST .../close ends that).")
    totalSlices: int
    distributedSlices: int
    completedSlices: int
    activeSlices: int = Field(description="Slices a worker holds right now.")
    failedSlices: int
    totalGPUTime: float = Field(
        description="Seconds of GPU time the job's results used, as their workers reported it "
        "(each slice's claim at most as long as its lease had lasted)."
    )
    waiting: str | None = Field(default=None, description="Why no worker can take the job.")
    verification: dict[str, int] | None = Field(
        default=None,
        description="For a verified job: quorum, pending (slices with results waiting for "
        "agreement), disputed (results disagree so far), rejected (results that lost a vote).",
    )


class JobOut(JobStatusOut):
    name: str
    language: str
    slicePaymentOffer: str = Field(description="Credits per slice, as a decimal string.")
    account: str = Field(description="The address of the account paying for the job.")
    public: dict[str, Any]
    requirements: dict[str, Any]
    created: datetime
    finished: datetime | None
    cancelCode: str | None
    cancelReason: str | None


class JobSummary(BaseModel):
    jobId: JobId
    name: str
    status: Literal["running", "finished", "cancelled"]
    totalSlices: int
    completedSlices: int
    created: datetime


class JobCount(BaseModel):
    jobCount: int


class SliceResultOut(BaseModel):
    sliceNumber: int
    value: Json = Field(description="What the work function returned for this slice.")


class ResultsOut(BaseModel):
    results: list[SliceResultOut]
    totalSlices: int
    completedSlices: int
    activeSlices: int
    nextRanges: list[str] = Field(
        description="Ranges still to fetch when this page stopped at the size limit; empty "
        "when it holds every stored result asked for."
    )


class AccountOut(BaseModel):
    name: str
    address: str
    balance: str = Field(description="Credits, as an exact decimal string such as '9.75'.")
