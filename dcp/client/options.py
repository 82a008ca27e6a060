"""Job options checked client-side against the scheduler's schemas, before anything is sent."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

from pydantic import ValidationError

from ..errors import DCPError
from ..protocol.gpu_use import uses_gpu
from ..protocol.messages import MAX_COMPUTE_GROUPS, GroupCredential, Verify, describe

__all__ = [
    "DEFAULT_PROGRESS_TIMEOUT_S",
    "REQUIREMENTS_SCHEMA",
    "Quorum",
    "check_compute_groups",
    "check_progress_timeout",
    "check_public",
    "check_requirements",
    "check_verify",
    "deploy_requirements",
]

DEFAULT_PROGRESS_TIMEOUT_S = 60
MAX_PROGRESS_TIMEOUT_S = 24 * 3600

# DCP's requirements object as the scheduler accepts it: every leaf is a boolean.
REQUIREMENTS_SCHEMA: dict[str, Any] = {
    "environment": {"webgpu": bool, "offscreenCanvas": bool},
    "discrete": bool,
}
# Filled in by the deploy from the job's `requires` (dcp.client.packages), never set by hand.
PACKAGE_REQUIREMENTS = ("packages", "pyodide")
REQUIRES_HINT = ": packages go in requires=[...] or job.requires(...) (docs/packages.md)"
PUBLIC_LIMITS = {"name": 200, "description": 2000, "link": 500}
_LINK_RE = re.compile(r"https?://\S+")


def check_requirements(requirements: Any) -> dict[str, Any]:
    """A copy of `requirements` when every key is one the scheduler knows; else EINVALID
    naming the first unknown key (the scheduler would refuse it, never drop it)."""
    if requirements is None:
        return {}
    _check_object(requirements, REQUIREMENTS_SCHEMA, "requirements")
    return copy.deepcopy(dict(requirements))


def deploy_requirements(requirements: dict[str, Any], work: Mapping[str, str]) -> dict[str, Any]:
    """The requirements a job is deployed with: the user's, and a WebGPU worker when the work
    function uses the GPU (dcp.protocol.gpu_use); EINVALID when the user's refuse WebGPU."""
    if not uses_gpu(work["language"], work["source"]):
        return requirements
    environment = requirements.get("environment", {})
    if environment.get("webgpu") is False:
        raise DCPError(
            "EINVALID",
            "the work function uses the GPU, but the job's requirements refuse WebGPU "
            '(requirements={"environment": {"webgpu": False}}): drop that requirement, '
            "or the work function's use of the GPU",
        )
    return {**requirements, "environment": {**environment, "webgpu": True}}


def _check_object(value: Any, schema: dict[str, Any], path: str) -> None:
    if not isinstance(value, dict):
        raise DCPError("EINVALID", f"{path} must be a dict, not {type(value).__name__}")
    for key, item in value.items():
        if key not in schema:
            known = ", ".join(schema)
            hint = REQUIRES_HINT if key in PACKAGE_REQUIREMENTS and path == "requirements" else ""
            raise DCPError(
                "EINVALID", f"{path}.{key} is not a known requirement (known here: {known}){hint}"
            )
        expected = schema[key]
        if isinstance(expected, dict):
            _check_object(item, expected, f"{path}.{key}")
        elif not isinstance(item, bool):
            raise DCPError("EINVALID", f"{path}.{key} must be True or False, not {item!r}")


def check_public(public: Any) -> dict[str, str]:
    """The job's public description (`name`, `description`, `link`), checked as the scheduler
    checks it: text only, within its lengths, the link an http(s) URL."""
    if public is None:
        return {}
    valid = isinstance(public, dict) and all(
        isinstance(key, str) and isinstance(value, str) for key, value in public.items()
    )
    if not valid:
        raise DCPError(
            "EINVALID", 'job.public must be a dict of strings such as {"name": "my job"}'
        )
    for key, value in public.items():
        if key not in PUBLIC_LIMITS:
            raise DCPError(
                "EINVALID", f"job.public.{key} is unknown: use name, description and link"
            )
        if len(value) > PUBLIC_LIMITS[key]:
            raise DCPError(
                "EINVALID", f"job.public.{key} is longer than {PUBLIC_LIMITS[key]} characters"
            )
    link = public.get("link", "")
    if link and not _LINK_RE.fullmatch(link):
        raise DCPError("EINVALID", f"job.public.link must be an http(s) URL, not {link!r}")
    return dict(public)


def check_progress_timeout(seconds: Any) -> float:
    """A progress timeout in seconds: a positive finite number, at most a day."""
    valid = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    if not valid or not math.isfinite(seconds) or not 0 < seconds <= MAX_PROGRESS_TIMEOUT_S:
        raise DCPError(
            "EINVALID",
            f"progress_timeout must be a number of seconds above 0 and at most "
            f"{MAX_PROGRESS_TIMEOUT_S}, not {seconds!r}",
        )
    return float(seconds) if isinstance(seconds, float) else seconds


@dataclass(frozen=True)
class Quorum:
    """Result verification: each slice is computed by workers of `quorum` distinct users and
    accepted when that many results agree (as canonical JSON; numbers within `tolerance`,
    relative and absolute). Disagreement sends the slice to further workers, up to
    `max_results` results (default quorum + 2); then the job is cancelled with ENOQUORUM.
    `adaptive=True`: results of trusted workers are accepted alone, except a `spot_check`
    fraction of them, which is replicated. The escrow covers `quorum` results of every slice.

    The rules are the protocol's (dcp.protocol.messages.Verify, dcp.protocol.verify)."""

    quorum: int = 2
    _: KW_ONLY
    tolerance: float = 0.0
    max_results: int | None = None
    adaptive: bool = False
    spot_check: float = 0.1

    def __post_init__(self) -> None:
        verify = _verify_model(dataclasses.asdict(self))
        object.__setattr__(self, "max_results", verify.max_results)  # the default filled in

    @property
    def replicas(self) -> int:
        """How many results of each slice the escrow pays for: the quorum."""
        return self.quorum

    def protocol(self) -> Verify:
        """The deploy frame's `verify`, every field given (the job hash covers it as sent)."""
        return Verify(**dataclasses.asdict(self))


def _verify_model(fields: Mapping[str, Any]) -> Verify:
    try:
        return Verify.model_validate(dict(fields), strict=True)
    except ValidationError as exc:
        problem = describe(exc).replace("Value error, ", "")
        raise DCPError("EINVALID", f"verify: {problem}") from None


def check_verify(verify: Any) -> Quorum | None:
    """A job's verification: a `dcp.Quorum`, a dict of its fields (as the REST API takes
    them), or None for none; EINVALID naming the first bad field otherwise."""
    if verify is None or isinstance(verify, Quorum):
        return verify
    if isinstance(verify, Mapping):
        return Quorum(**_verify_model(verify).model_dump())
    raise DCPError(
        "EINVALID",
        f"verify must be dcp.Quorum(...) (or a dict of its fields), not {type(verify).__name__}",
    )


def check_compute_groups(groups: Any) -> list[dict[str, str]]:
    """The compute groups a job is deployed into, as a list of `{"joinKey", "joinSecret"}`
    dicts (None or empty: the public group); EINVALID naming the first bad entry."""
    if groups is None:
        return []
    if not isinstance(groups, list | tuple):
        raise DCPError(
            "EINVALID",
            'compute_groups must be a list such as [{"joinKey": "my-group", "joinSecret": "..."}]'
            f", not {type(groups).__name__}",
        )
    if len(groups) > MAX_COMPUTE_GROUPS:
        raise DCPError(
            "EINVALID", f"compute_groups lists {len(groups)} groups: at most {MAX_COMPUTE_GROUPS}"
        )
    return [_group_credential(index, group) for index, group in enumerate(groups)]


def _group_credential(index: int, group: Any) -> dict[str, str]:
    if not isinstance(group, Mapping):
        raise DCPError(
            "EINVALID",
            f'compute_groups[{index}] must be a dict {{"joinKey": ..., "joinSecret": ...}}, '
            f"not {type(group).__name__}",
        )
    try:
        credential = GroupCredential.model_validate(dict(group), strict=True)
    except ValidationError as exc:
        raise DCPError("EINVALID", f"compute_groups[{index}].{describe(exc)}") from None
    return credential.model_dump()
