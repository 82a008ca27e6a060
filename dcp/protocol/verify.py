"""Result verification: when the results of one slice agree, and what a vote decides.

The scheduler and local_exec both apply these rules. Results are compared as canonical JSON
(key order does not matter); a job's `tolerance` lets two numbers differ by that much,
relative to the larger of them (and absolutely near zero). Results that agree form a group; a
slice is accepted when one group reaches the job's quorum, which, with results arriving one at
a time, is always the largest group. The members of the winning group are paid, the others
lost the vote. When `max_results` results have arrived without a quorum, verification gives up
and the job is told (ENOQUORUM).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .messages import Verify
from .signed import canonical_json

NO_QUORUM = "ENOQUORUM"
NO_QUORUM_ERROR_NAME = "NoQuorum"


def replicas(verify: Any) -> int:
    """Results of each slice a job's escrow pays for (its quorum when it asked for
    verification, else one): what the cheque, the escrow and the batch cheques multiply by.
    `verify` is a Verify, its fields as a dict, anything with a `replicas` (the client's
    Quorum), or None."""
    if verify is None:
        return 1
    if isinstance(verify, Mapping):
        verify = Verify.model_validate(verify)
    return int(verify.replicas)


def agree(a: Any, b: Any, tolerance: float = 0.0) -> bool:
    """Whether two results are the same, numbers within `tolerance` of each other."""
    if tolerance <= 0:
        return canonical_json(a) == canonical_json(b)
    return _close(a, b, tolerance)


def _close(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tolerance) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tolerance) for k in a)
    return type(a) is type(b) and a == b


@dataclass
class Vote:
    """The outcome of the results of one slice so far (indexes into the results given)."""

    groups: list[list[int]] = field(default_factory=list)  # agreeing results, largest first
    winners: list[int] | None = None  # the group that reached the quorum
    exhausted: bool = False  # max_results reached without a quorum

    @property
    def accepted(self) -> bool:
        return self.winners is not None

    @property
    def losers(self) -> list[int]:
        """Results outside the winning group: they lost the vote."""
        if self.winners is None:
            return []
        won = set(self.winners)
        return [i for group in self.groups for i in group if i not in won]

    @property
    def disputed(self) -> bool:
        """Results disagree and no group has the quorum yet: a tie-breaker is needed."""
        return not self.accepted and len(self.groups) > 1


def vote(results: list[Any], verify: Verify) -> Vote:
    """Group `results` of one slice (in arrival order) and decide whether one group won."""
    groups: list[list[int]] = []
    for index, value in enumerate(results):
        for group in groups:
            if agree(results[group[0]], value, verify.tolerance):
                group.append(index)
                break
        else:
            groups.append([index])
    outcome = Vote(groups=sorted(groups, key=len, reverse=True))
    reached = [group for group in groups if len(group) >= verify.quorum]
    if reached:
        # The first group to reach the quorum wins; with one result at a time it is the only one.
        outcome.winners = min(reached, key=lambda group: group[verify.quorum - 1])[: verify.quorum]
    elif len(results) >= (verify.max_results or verify.quorum):
        outcome.exhausted = True
    return outcome


def no_quorum_reason(slice_number: int, results: int, verify: Verify) -> str:
    """What the job is told when a slice's results never agreed."""
    return (
        f"slice {slice_number}: {results} results from workers of different users did not "
        f"agree; the job asked for {verify.quorum} in agreement"
    )
