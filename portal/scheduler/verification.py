"""Verified results: a job that asked for verification pays only for results that agree.

Each worker's result of a slice of such a job is kept as a Replica; the protocol's vote
(dcp.protocol.verify) decides, as each one arrives, whether a group of agreeing results from
workers of distinct users has reached the job's quorum. Then the slice is done with that value,
the winners are paid the offer each, and the results that disagreed are rejected unpaid and cost
their users a strike. Until then the slice goes back to the queue for a worker of another user;
when `max_results` results never agree, the job is cancelled with ENOQUORUM.

Reputation: a user whose results agreed VERIFY_TRUSTED_STREAK times in a row is trusted, and a
job with `adaptive` verification accepts a trusted user's result alone, except for a
`spot_check` fraction of them, which are replicated as usual. VERIFY_MAX_STRIKES lost votes
suspend a user's workers for VERIFY_SUSPENSION_SECONDS (and clear the strikes). Anonymous
workers are one user (worker_credentials.py): one party in every vote, never trusted whatever
their streak, and suspended together.

The caller (services.record_results) holds the job's row lock, so one job's votes never race.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from dcp.protocol.messages import Verify
from dcp.protocol.verify import NO_QUORUM_ERROR_NAME, Vote, no_quorum_reason, vote
from portal.users.models import User

from . import notify
from .models import (
    Job,
    Replica,
    ReplicaState,
    Slice,
    SliceStatus,
    WorkerConnection,
    WorkerReputation,
)
from .worker_credentials import is_anonymous_workers


@dataclass(frozen=True)
class Payee:
    """Who is paid for an accepted result: the user (for the tally) and the address."""

    user_id: int
    address: str


@dataclass
class Votes:
    """What the votes of one result batch decided."""

    accepted: list[tuple[int, Any]] = field(default_factory=list)  # (slice, agreed value)
    paid: Counter[Payee] = field(default_factory=Counter)  # accepted results per payee
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # `duplicate-result` data
    requeued: int = 0  # slices sent back for another user's worker
    no_quorum: tuple[int, str] | None = None  # (slice, reason) of a slice that never agreed


def record(
    job: Job,
    held: dict[int, int],
    results: list[tuple[int, Any]],
    *,
    worker: str,
    user: User,
    address: str,
) -> Votes:
    """Keep each held slice's result as a replica and vote on it."""
    verify = Verify.model_validate(job.verify)
    trusted = verify.adaptive and _trusted(user)  # once a batch: one user sent it all
    votes = Votes()
    for number, value in results:
        if number not in held:
            continue
        Replica.objects.create(
            slice_id=held[number], user=user, worker=worker, payee=address, value=value
        )
        replicas = list(Replica.objects.filter(slice_id=held[number]).order_by("id"))
        outcome = _decide(verify, replicas, trusted)
        _apply(number, held[number], replicas, outcome, votes)
        if outcome.exhausted:
            votes.no_quorum = (number, no_quorum_reason(number, len(replicas), verify))
            break  # the job ends here
    return votes


def _decide(verify: Verify, replicas: list[Replica], trusted: bool) -> Vote:
    """The vote, or a trusted user's lone result accepted under adaptive verification."""
    outcome = vote([replica.value for replica in replicas], verify)
    alone = len(replicas) == 1 and verify.adaptive and trusted
    if alone and random.random() >= verify.spot_check:  # noqa: S311 (a sample, not a secret)
        return Vote(groups=[[0]], winners=[0])
    return outcome


def _trusted(user: User) -> bool:
    if is_anonymous_workers(user):  # anyone may be behind it: never accepted alone
        return False
    reputation = WorkerReputation.objects.filter(user=user).first()
    return reputation is not None and reputation.streak >= settings.VERIFY_TRUSTED_STREAK


def _apply(
    number: int, slice_id: int, replicas: list[Replica], outcome: Vote, votes: Votes
) -> None:
    rows = Slice.objects.filter(pk=slice_id)
    if len(replicas) > 1:
        votes.duplicates.append(
            {
                "slice": number,
                "results": len(replicas),
                "agreeing": len(outcome.groups[0]),
                "accepted": outcome.accepted,
                "disputed": outcome.disputed,
            }
        )
    if outcome.winners is not None:
        winners = [replicas[i] for i in outcome.winners]
        losers = [replica for replica in replicas if replica not in winners]
        rows.update(
            status=SliceStatus.DONE,
            result=winners[0].value,
            worker="",
            lease_expires=None,
            disputed=False,
        )
        _settle_replicas(winners, losers)
        votes.accepted.append((number, winners[0].value))
        votes.paid.update(Payee(r.user_id, r.payee) for r in winners)
    elif outcome.exhausted:
        rows.update(status=SliceStatus.FAILED, worker="", lease_expires=None, disputed=True)
        Replica.objects.filter(slice_id=slice_id).update(state=ReplicaState.REJECTED)
    else:
        rows.update(
            status=SliceStatus.NEW, worker="", lease_expires=None, disputed=outcome.disputed
        )
        votes.requeued += 1


def _settle_replicas(winners: list[Replica], losers: list[Replica]) -> None:
    """Winners are accepted and their users' streaks grow; losers are rejected with a strike."""
    Replica.objects.filter(pk__in=[r.pk for r in winners]).update(state=ReplicaState.ACCEPTED)
    Replica.objects.filter(pk__in=[r.pk for r in losers]).update(state=ReplicaState.REJECTED)
    for replica in winners:
        reputation, _ = WorkerReputation.objects.get_or_create(user_id=replica.user_id)
        WorkerReputation.objects.filter(pk=reputation.pk).update(
            streak=F("streak") + 1, accepted=F("accepted") + 1
        )
    for replica in losers:
        _strike(replica.user_id)


def _strike(user_id: int) -> None:
    reputation, _ = WorkerReputation.objects.get_or_create(user_id=user_id)
    reputation.streak = 0
    reputation.rejected += 1
    reputation.strikes += 1
    if reputation.strikes >= settings.VERIFY_MAX_STRIKES:
        reputation.strikes = 0
        reputation.suspended_until = timezone.now() + timedelta(
            seconds=settings.VERIFY_SUSPENSION_SECONDS
        )
        notify.workers_suspended(user_id, _suspension_reason(reputation))
    reputation.save()


def no_quorum_error(number: int, reason: str) -> dict[str, Any]:
    """The `error` event of a slice whose results never agreed."""
    return {"slice": number, "name": NO_QUORUM_ERROR_NAME, "message": reason, "traceback": ""}


def suspension(user: User) -> str:
    """Why this user's workers get no work now, or "" when they may work."""
    reputation = WorkerReputation.objects.filter(user=user).first()
    if reputation is None or reputation.suspended_until is None:
        return ""
    if reputation.suspended_until <= timezone.now():
        return ""
    return _suspension_reason(reputation)


def _suspension_reason(reputation: WorkerReputation) -> str:
    until = reputation.suspended_until
    assert until is not None
    return (
        f"results of your workers lost {settings.VERIFY_MAX_STRIKES} verification votes: no work "
        f"until {until.isoformat(timespec='seconds')}"
    )


# --- reads ------------------------------------------------------------------------------------


def verification_status(job: Job) -> dict[str, int]:
    """The status's `verification`: slices with results waiting for agreement, those whose
    results disagree so far, and results rejected (lost a vote, or never agreed)."""
    replicas = Replica.objects.filter(slice__job=job)
    return {
        "quorum": job.replicas,
        "pending": replicas.filter(state=ReplicaState.PENDING)
        .values("slice_id")
        .distinct()
        .count(),
        "disputed": Slice.objects.filter(job=job, disputed=True, status=SliceStatus.NEW).count(),
        "rejected": replicas.filter(state=ReplicaState.REJECTED).count(),
    }


def waiting_for_other_users(job: Job) -> int:
    """Slices of the job waiting that no connected worker may take: every connected worker's
    user already gave a result for them."""
    others = WorkerConnection.objects.exclude(
        user_id__in=Replica.objects.filter(slice_id=OuterRef(OuterRef("pk"))).values("user_id")
    )
    return (
        Slice.objects.filter(job=job, status=SliceStatus.NEW)
        .filter(Exists(Replica.objects.filter(slice_id=OuterRef("pk"))))
        .exclude(Exists(others))
        .count()
    )
