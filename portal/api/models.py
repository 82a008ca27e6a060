"""API keys: bearer tokens that let a program act as one identity key and pay from one account.

Only a SHA-256 digest of each token is stored; the token itself is shown once, at creation.
A token reads `dcp_<prefix>_<secret>`: the prefix is a short public id to find the row, the
secret 256 random bits, so a fast hash is enough (there is nothing to brute-force).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from portal.wallet.models import Key


class ApiKey(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    label = models.CharField(max_length=40)
    prefix = models.CharField(max_length=16, unique=True, help_text="Public id of the key.")
    digest = models.CharField(max_length=64, help_text="SHA-256 of the whole token, in hex.")
    identity = models.ForeignKey(Key, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(Key, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"API key {self.label} (dcp_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def hint(self) -> str:
        """What the page shows of a key after creation: its public prefix only."""
        return f"dcp_{self.prefix}_…"


class JobPayment(models.Model):
    """An open job's paying account that its deploy unlocked with a secret (a keystore and
    its password, or the account key's passphrase): later batches of slices are paid from it
    without the secret, as dcp-rest's are, since the deploy authorised the account for the job."""

    job = models.OneToOneField(
        "scheduler.Job", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    address = models.CharField(max_length=42, help_text="EIP-55 address of the paying account")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"job {self.job_id} paid from {self.address}"
