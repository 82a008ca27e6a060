"""Jobs and their slices.

A slice row is made when the slice is first handed out, not at deploy: a range job stores only
its range, and a values job stores its input once per slice (SliceInput), so deploying a
million-slice range job writes one row. `Job.issued` counts slice numbers handed out so far;
slices with a row and status NEW are ones given back (a lapsed lease, a disconnect, a retry).

A job deployed into compute groups (`Job.compute_groups`) goes only to workers that joined one
of them; a job of no group is the public group's, which every worker serves unless it left it.

A job that asked for verification (`Job.verify`, the protocol's Verify) keeps each worker's
result of a slice as a Replica until the vote decides (portal/scheduler/verification.py); the
slice goes back to NEW after each result that did not decide, for a worker of another user.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

from dcp.protocol.inputs import span_of
from dcp.protocol.verify import replicas
from portal.wallet.digests import secret_matches


def number_among(numbers: Sequence[int]) -> RawSQL:
    """A filter: the row's `number` is one of `numbers`, in one query parameter however many
    there are (a list of thousands of placeholders costs the driver more to parse than the
    database to run)."""
    # Fixed SQL; the numbers travel as one parameter.
    if connection.vendor == "postgresql":
        return RawSQL("number = ANY(%s)", (list(numbers),), output_field=BooleanField())
    return RawSQL(
        "number IN (SELECT value FROM json_each(%s))",
        (json.dumps(list(numbers)),),
        output_field=BooleanField(),
    )


class JobStatus(models.TextChoices):
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"


GROUP_NAME_LENGTH = 100


class ComputeGroup(models.Model):
    """A closed set of workers: jobs deployed into it go only to workers that joined it.

    Deploying into it and joining it both need its join key (public, unique) and join secret;
    only a SHA-256 digest of the secret is kept (it carries 192 random bits, so a fast hash is
    enough: there is nothing to brute-force)."""

    name = models.CharField(max_length=GROUP_NAME_LENGTH)
    join_key = models.SlugField(max_length=64, unique=True)
    join_secret_hash = models.CharField(max_length=64, help_text="SHA-256 of the secret, hex.")
    # Protected, as the group's link to its jobs is: were a group to vanish, its jobs would
    # be of no group, which is the public group's.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="compute_groups"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"compute group {self.join_key}"

    def opens(self, join_secret: str) -> bool:
        """Whether this is the group's join secret (compared in constant time)."""
        return secret_matches(self.join_secret_hash, join_secret)


class Job(models.Model):
    id = models.CharField(primary_key=True, max_length=32)
    ref = models.CharField(max_length=64, unique=True, help_text="The client's idempotency key.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs"
    )
    identity = models.CharField(max_length=42)
    payer = models.CharField(max_length=42, help_text="Account address that paid the escrow.")
    language = models.CharField(max_length=8, default="python")
    source = models.TextField()
    args = models.JSONField(default=list)
    input_kind = models.CharField(max_length=8)  # "range", "product" or "values"
    input_spec = models.JSONField(default=dict, help_text="The range or product, as sent.")
    is_open = models.BooleanField(default=False, help_text="Accepts add_slices until closed.")
    requirements = models.JSONField(default=dict)
    needs_webgpu = models.BooleanField(default=False)
    needs_offscreen_canvas = models.BooleanField(default=False)
    discrete = models.BooleanField(default=False, help_text="One slice per task.")
    progress_timeout = models.PositiveIntegerField(default=60)
    frame_slices = models.PositiveIntegerField(
        default=0, help_text="The most slices one task frame can carry (0: no bound of its own)."
    )
    total = models.PositiveIntegerField()
    offer = models.BigIntegerField(help_text="Payment per slice in base units.")
    cpu_rate = models.BigIntegerField(
        default=0,
        help_text="Payment per CPU-second in base units, for a job deployed at market value "
        "(its offer is then 0); 0: paid per slice.",
    )
    gpu_rate = models.BigIntegerField(
        default=0,
        help_text="A market-value job's payment per GPU-second in base units, besides cpu_rate.",
    )
    estimating = models.BooleanField(
        default=False,
        help_text="A market-value job whose estimation slices have not all come back: only "
        "they are handed out.",
    )
    nofunds = models.BooleanField(
        default=False,
        help_text="Paused: its escrow cannot pay for another slice until an escrow request.",
    )
    owed = models.JSONField(
        default=dict,
        help_text="A market-value job's debts to workers whose results cost more than its "
        "escrow held: address -> [user id, base units]; paid first when credits are added.",
    )
    public = models.JSONField(default=dict)
    verify = models.JSONField(
        null=True, blank=True, help_text="Result verification as deployed (protocol Verify)."
    )
    compute_groups = models.ManyToManyField(
        ComputeGroup,
        through="JobComputeGroup",
        blank=True,
        related_name="jobs",
        help_text="Only workers of these groups get it; none: the public group's workers.",
    )
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.RUNNING)
    cancel_code = models.CharField(max_length=20, blank=True)
    cancel_reason = models.CharField(max_length=200, blank=True)
    issued = models.PositiveIntegerField(default=0)
    computed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    paid = models.BigIntegerField(default=0)
    gpu_ms = models.FloatField(
        default=0,
        help_text="Milliseconds of GPU time its kept results used, each claim at most as long "
        "as the slice's lease had lasted.",
    )
    cpu_ms = models.FloatField(
        default=0,
        help_text="Milliseconds its kept results took in their sandboxes, each claim at most as "
        "long as the slice's lease had lasted.",
    )
    bytes_in = models.PositiveBigIntegerField(
        default=0, help_text="Bytes of its slices' data handed to workers, blobs included."
    )
    bytes_out = models.PositiveBigIntegerField(
        default=0, help_text="Bytes of its kept results, blobs included."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="When a worker was last handed slices of it."
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(computed__lte=models.F("total")), name="job_computed_le_total"
            ),
            models.CheckConstraint(
                condition=Q(issued__lte=models.F("total")), name="job_issued_le_total"
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.id} ({self.status})"

    @property
    def name(self) -> str:
        return str(self.public.get("name") or self.id)

    @property
    def replicas(self) -> int:
        """Results of each slice the escrow pays for: the quorum when verified, else one."""
        return replicas(self.verify)

    def data_of(self, numbers: list[int]) -> list[Any]:
        """The inputs of slices `numbers`: computed for ranges, stored for values."""
        if self.input_kind == "values":
            stored = dict(
                SliceInput.objects.filter(number_among(numbers), job=self).values_list(
                    "number", "datum"
                )
            )
            return [stored[n] for n in numbers]
        expand = span_of(self.input_kind, self.input_spec)
        return [expand.datum(n) for n in numbers]


class JobComputeGroup(models.Model):
    """A job deployed into a compute group."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="group_links")
    group = models.ForeignKey(ComputeGroup, on_delete=models.PROTECT, related_name="job_links")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "group"], name="job_compute_group_unique")
        ]

    def __str__(self) -> str:
        return f"{self.job_id} in {self.group_id}"


class SliceStatus(models.TextChoices):
    NEW = "new"
    LEASED = "leased"
    DONE = "done"
    FAILED = "failed"


class Slice(models.Model):
    # No index of its own: the unique (job, number) index serves every lookup by job, and one
    # index fewer is less to write for every slice leased and done.
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="slices", db_index=False)
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=SliceStatus.choices, default=SliceStatus.NEW)
    worker = models.CharField(max_length=40, blank=True)
    lease_expires = models.DateTimeField(null=True)
    leased_at = models.DateTimeField(null=True, help_text="When its current lease began.")
    attempts = models.PositiveSmallIntegerField(default=0)
    errors = models.PositiveSmallIntegerField(default=0)
    noprogress = models.PositiveSmallIntegerField(default=0)
    lost = models.PositiveSmallIntegerField(
        default=0,
        help_text="Users whose worker's lease of it ended unanswered (left or went silent).",
    )
    last_failed_worker = models.CharField(max_length=40, blank=True)
    retry_after = models.DateTimeField(
        null=True, help_text="Until then, not for the failed worker."
    )
    result = models.JSONField(null=True)
    error = models.JSONField(null=True)
    disputed = models.BooleanField(default=False, help_text="Its results disagree so far.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="slice_number_unique")
        ]
        indexes = [
            models.Index(fields=["job", "status", "number"]),
            models.Index(fields=["status", "lease_expires"]),
            models.Index(fields=["worker", "status"]),  # what one worker holds
        ]

    def __str__(self) -> str:
        return f"slice {self.number} of {self.job_id} ({self.status})"


class SliceInput(models.Model):
    """The input value of one slice of a values job (range jobs compute theirs)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="inputs")
    number = models.PositiveIntegerField()
    datum = models.JSONField(null=True)  # a JSON null input is SQL NULL

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="slice_input_unique")]

    def __str__(self) -> str:
        return f"input of slice {self.number} of {self.job_id}"


class WorkerTally(models.Model):
    """What a user's worker tabs have computed and earned, for the Worker tab's totals."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    slices = models.PositiveBigIntegerField(default=0)
    earned = models.BigIntegerField(default=0)
    # Metered as the job's totals are (Job.cpu_ms, ...), for the results these workers gave
    # (kept ones) and the slices' data handed to them.
    cpu_ms = models.FloatField(default=0)
    gpu_ms = models.FloatField(default=0)
    bytes_in = models.PositiveBigIntegerField(default=0)
    bytes_out = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.user}: {self.slices} slices"


class ReplicaState(models.TextChoices):
    PENDING = "pending"  # waiting for the vote
    ACCEPTED = "accepted"  # in the winning group: paid
    REJECTED = "rejected"  # lost the vote: not paid


class Replica(models.Model):
    """One worker's result of a slice of a job that asked for verification."""

    slice = models.ForeignKey(Slice, on_delete=models.CASCADE, related_name="replicas")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    worker = models.CharField(max_length=40)
    payee = models.CharField(max_length=42, help_text="The address paid if it wins the vote.")
    value = models.JSONField(null=True)
    state = models.CharField(
        max_length=8, choices=ReplicaState.choices, default=ReplicaState.PENDING
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Replicas of one slice come from distinct users: one user's tabs are one vote.
            models.UniqueConstraint(fields=["slice", "user"], name="replica_user_unique")
        ]

    def __str__(self) -> str:
        return f"result of {self.slice} by {self.user} ({self.state})"


class WorkerReputation(models.Model):
    """How a user's workers fared in votes: a long run of agreeing results earns trust (adaptive
    verification accepts them alone); results that lose votes earn strikes, then a suspension."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    streak = models.PositiveIntegerField(default=0, help_text="Agreeing results in a row.")
    accepted = models.PositiveBigIntegerField(default=0)
    rejected = models.PositiveBigIntegerField(default=0)
    strikes = models.PositiveSmallIntegerField(default=0)
    suspended_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user}: streak {self.streak}, {self.rejected} rejected"


class LostLease(models.Model):
    """A user whose worker held the slice and vanished (or went silent): counted once per
    user, so that one volunteer dropping a slice again and again cannot fail the job."""

    slice = models.ForeignKey(Slice, on_delete=models.CASCADE, related_name="lost_leases")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["slice", "user"], name="lost_lease_user_unique")
        ]

    def __str__(self) -> str:
        return f"{self.slice} lost by {self.user}"


class WorkerConnection(models.Model):
    """A connected worker tab and what it can do: to tell why a job is waiting."""

    id = models.CharField(primary_key=True, max_length=40)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    cores = models.PositiveSmallIntegerField(default=1)
    webgpu = models.BooleanField(default=False)
    offscreen_canvas = models.BooleanField(default=False)
    connected_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"worker {self.id} of {self.user}"


class InputBatch(models.Model):
    """A batch of values added to an open job; its `ref` makes a resent batch a no-op."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="batches")
    ref = models.CharField(max_length=64)
    first = models.PositiveIntegerField()
    count = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "ref"], name="input_batch_unique")]

    def __str__(self) -> str:
        return f"batch {self.ref} of {self.job_id}"


WORKER_TOKEN_NAME_LENGTH = 40


class WorkerToken(models.Model):
    """A credential that lets a worker without a signed-in session (a headless browser) work
    as its owner: it opens the worker socket and nothing else (never the REST API).

    A token reads `dcpw_<prefix>_<secret>`: the prefix is a public id to find the row, the
    secret 256 random bits; only a SHA-256 digest of the whole token is kept (there is
    nothing to brute-force, so a fast hash is enough), and the token is shown once."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="worker_tokens"
    )
    name = models.CharField(max_length=WORKER_TOKEN_NAME_LENGTH)
    prefix = models.CharField(max_length=16, unique=True, help_text="Public id of the token.")
    digest = models.CharField(max_length=64, help_text="SHA-256 of the whole token, in hex.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"worker token {self.name} ({self.hint})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def hint(self) -> str:
        """What the Workers page shows of a token after creation: its public prefix only."""
        return f"dcpw_{self.prefix}_…"
