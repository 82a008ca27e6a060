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

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dcp.protocol import storable
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

from .errors import UNSUPPORTED

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


# dcp-rest's runtimes (DCP's "worktimes") and the language each one runs.
RUNTIME_LANGUAGES: dict[str, Language] = {"map-basic": "js", "pyodide": "python"}
# Language names as people write them (dcp-rest's examples say "js" and "JavaScript").
LANGUAGE_NAMES: dict[str, Language] = {"js": "js", "javascript": "js", "python": "python"}


def unsupported(message: str) -> PydanticCustomError:
    return PydanticCustomError(UNSUPPORTED, message)


def _language_name(value: object) -> object:
    if isinstance(value, str):
        return LANGUAGE_NAMES.get(value.strip().lower(), value)
    return value


class RuntimeIn(ApiModel):
    """dcp-rest's `work.runtime` (DCP's worktime): it decides the language when given."""

    name: Literal["map-basic", "pyodide"] = Field(
        description="map-basic runs a JavaScript function, pyodide a Python one."
    )
    version: str | None = Field(
        default=None,
        max_length=100,
        description="Accepted and not used: each runtime has one version here (the portal's "
        "JavaScript sandbox and its Pyodide).",
    )
    custom: bool = Field(default=False, description="Custom runtimes are not supported.")

    @field_validator("custom")
    @classmethod
    def _built_in(cls, custom: bool) -> bool:
        if custom:
            raise unsupported("custom runtimes are not supported: use map-basic or pyodide")
        return custom


class WorkIn(ApiModel):
    language: Annotated[Language | None, BeforeValidator(_language_name)] = Field(
        default=None,
        description="python runs in Pyodide; js (or JavaScript) is a JavaScript function. "
        "Without it or runtime, js, as dcp-rest reads such a body.",
    )
    runtime: RuntimeIn | None = Field(
        default=None, description="dcp-rest's runtime; when given, it decides the language."
    )
    function: str = Field(
        min_length=1,
        max_length=MAX_SOURCE_CHARS,
        description="Source of the work function, called once per slice as work(datum, *args).",
    )

    @property
    def runtime_language(self) -> Language:
        """The language the function runs in: the runtime's, else `language`, else js."""
        if self.runtime is not None:
            return RUNTIME_LANGUAGES[self.runtime.name]
        return self.language or "js"


def _keystore_object(value: object) -> object:
    """A keystore given as JSON text (dcp-rest's spec) or as an object (its examples)."""
    if not isinstance(value, str):
        return value
    try:
        return storable.loads(value)
    except ValueError:
        raise ValueError("not a keystore: give the keystore's JSON text or object") from None


Keystore = Annotated[
    dict[str, Any],
    BeforeValidator(_keystore_object),
    WithJsonSchema(
        {
            "oneOf": [{"type": "string"}, {"type": "object"}],
            "description": "An account keystore (V3 JSON), as text or as an object.",
        }
    ),
]


class AccountIn(ApiModel):
    """Which account pays: by address or label among yours, or a keystore and its password."""

    address: str | None = Field(
        default=None, max_length=44, description="An account key's address, with or without 0x."
    )
    label: str | None = Field(
        default=None, max_length=40, description="The label of one of your account keys."
    )
    keystore: Keystore | None = Field(
        default=None,
        alias="json",
        description="An account keystore that pays, opened with `password` (it need not be "
        "one of your keys: opening it proves you may spend from it).",
    )
    password: str | None = Field(
        default=None,
        max_length=1024,
        description="The passphrase of `json`, or of the chosen account key when it has one.",
    )


def _values_of_remote_data_set(value: object) -> object:
    """dcp-rest's `{"remoteDataSet": [...]}`: an empty one is no slices; URLs are refused."""
    if isinstance(value, dict) and set(value) <= {"remoteDataSet"}:
        urls = value.get("remoteDataSet", [])
        if isinstance(urls, list) and not urls:
            return []
        if isinstance(urls, list):
            raise unsupported(
                "remote data sets are not supported: workers here have no network, so send "
                "the input values themselves in slices"
            )
    return value


Slices = Annotated[
    list[SliceValue],
    BeforeValidator(_values_of_remote_data_set),
    Field(
        max_length=MAX_SLICES_PER_REQUEST,
        description="Input values, one per slice (more may follow: every REST job is open). "
        'dcp-rest\'s {"remoteDataSet": []} is read as none; one with URLs is 400 EUNSUPPORTED.',
    ),
]


def _market_value_when_empty(value: object) -> object:
    # dcp-rest offers the market value for an offer it reads as false: absent, null or "".
    return "MARKET_VALUE" if value is None or value == "" else value


class JobIn(ApiModel):
    slices: Slices = Field(default_factory=list)
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
    slicePaymentOffer: Annotated[
        Offer | Literal["MARKET_VALUE"], BeforeValidator(_market_value_when_empty)
    ] = Field(
        default="MARKET_VALUE",
        description="Credits paid per slice (a number or decimal string), or MARKET_VALUE: the "
        "portal's MARKET_SLICE_OFFER setting (also for null or an empty string).",
    )
    account: AccountIn | None = Field(
        default=None,
        description="The paying account; without it, the API key's account, or with Basic "
        "auth or the session your default account.",
    )


class SlicesIn(ApiModel):
    """Input values for an open job: `slices`, or `sliceData` as dcp-rest names them."""

    slices: list[SliceValue] | None = Field(
        default=None, min_length=1, max_length=MAX_SLICES_PER_REQUEST
    )
    sliceData: list[SliceValue] | None = Field(
        default=None, min_length=1, max_length=MAX_SLICES_PER_REQUEST
    )

    @model_validator(mode="after")
    def _one_list(self) -> SlicesIn:
        if self.slices is None and self.sliceData is None:
            raise ValueError("give the input values in slices (or sliceData, dcp-rest's name)")
        if self.slices is not None and self.sliceData is not None:
            raise ValueError("give the input values in slices or in sliceData, not both")
        return self

    @property
    def values(self) -> list[Any]:
        return self.slices if self.slices is not None else self.sliceData or []


class CancelIn(ApiModel):
    reason: str = Field(default="", max_length=200)


class EscrowIn(ApiModel):
    amount: Offer = Field(description="Credits to add, a number or a decimal string.")

    @field_validator("amount")
    @classmethod
    def _above_zero(cls, amount: Decimal) -> Decimal:
        if amount <= 0:
            raise ValueError("must be more than 0 credits")
        return amount


class EscrowOut(BaseModel):
    jobId: JobId
    escrow: str = Field(description="Credits the job's escrow holds now, a decimal string.")


# --- responses ----------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable error code such as EINVALID or ENOFUNDS.")
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


class JobCreated(BaseModel):
    jobId: JobId


class JobProgress(BaseModel):
    jobId: JobId
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


class JobStatusOut(JobProgress):
    status: Literal["running", "estimation", "paused", "finished", "cancelled"] = Field(
        description="finished: closed, and every slice has a result; estimation and paused "
        "(its escrow ran out) are stages of a running job deployed at market value."
    )


class JobOut(JobProgress):
    status: Literal["running", "completed", "cancelled"] = Field(
        description="In dcp-rest's words: completed once every slice added so far has a "
        "result (the job may still be open), cancelled, else running."
    )
    totalCPUTime: float = Field(
        description="Seconds of CPU time the job's results used, as their workers reported it."
    )
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
