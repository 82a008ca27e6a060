"""The writes of compute groups: create one, rotate its join secret, take a job out of it.
(Deploys and workers' hellos check a join key and secret with selectors.groups_for.)

A group's secret is made here, shown to its owner once, and kept only as a SHA-256 digest.
Taking a job out of a group stops that group's workers getting its slices (those already
handed out finish); a job taken out of its last group is cancelled and its escrow refunded,
never opened to the public group, which it was not deployed into.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils.text import slugify

from portal.users.models import User
from portal.wallet.digests import secret_digest

from . import services
from .errors import SchedulerError
from .models import GROUP_NAME_LENGTH, ComputeGroup, Job, JobComputeGroup

SECRET_BYTES = 24  # 192 random bits: a fast hash of the secret is enough
KEY_SUFFIX_BYTES = 4  # the random part of a join key, after the name's slug
NAME_IN_KEY = 40  # characters of the name's slug in its join key, at most


@transaction.atomic
def create_group(*, owner: User, name: str) -> tuple[ComputeGroup, str]:
    """A new compute group of `owner`; returns it and its join secret, which is not stored and
    cannot be shown again."""
    name = name.strip()
    if not name or len(name) > GROUP_NAME_LENGTH:
        raise SchedulerError(
            "EINVALID", f"a compute group needs a name of 1 to {GROUP_NAME_LENGTH} characters"
        )
    secret = _new_secret()
    group = ComputeGroup.objects.create(
        owner=owner,
        name=name,
        join_key=_new_join_key(name),
        join_secret_hash=secret_digest(secret),
    )
    return group, secret


def rotate_secret(*, group: ComputeGroup) -> str:
    """Give the group a new join secret and return it. Deploys and workers' hellos need the new
    one from now on; jobs already in the group stay, and workers already joined keep serving
    it until they say hello again."""
    secret = _new_secret()
    group.join_secret_hash = secret_digest(secret)
    group.save(update_fields=["join_secret_hash"])
    return secret


@dataclass(frozen=True)
class Removal:
    """A job taken out of a group, and whether that cancelled it (it was in no other group)."""

    job: Job
    cancelled: bool


@transaction.atomic
def remove_job(*, group: ComputeGroup, job_id: str) -> Removal:
    """Take a job out of the group: its workers get no more of its slices. A running job left
    in no group is cancelled and refunded (it never becomes a public job)."""
    job = Job.objects.select_for_update().filter(pk=job_id, group_links__group=group).first()
    if job is None:
        raise SchedulerError("ENOJOB", f"no job {job_id} in compute group {group.join_key}")
    JobComputeGroup.objects.filter(job=job, group=group).delete()
    cancelled = False
    if not JobComputeGroup.objects.filter(job=job).exists():
        reason = f"taken out of compute group {group.name}, the last it was deployed into"
        cancelled = services.cancel_locked_job(job, code="ECANCELLED", reason=reason)
    return Removal(job=job, cancelled=cancelled)


def _new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def _new_join_key(name: str) -> str:
    """The name's slug and a random suffix: readable, public, unique."""
    stem = slugify(name)[:NAME_IN_KEY].strip("-_") or "group"
    while True:
        join_key = f"{stem}-{secrets.token_hex(KEY_SUFFIX_BYTES)}"
        if not ComputeGroup.objects.filter(join_key=join_key).exists():
            return join_key
