"""Identity keys (who deploys) and account keys (whose address is a bank account)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class KeyKind(models.TextChoices):
    IDENTITY = "identity", "identity key"
    ACCOUNT = "account", "account key"


class Key(models.Model):
    """A secp256k1 key owned by a user. The private key is stored only sealed (sealing.py)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="keys"
    )
    kind = models.CharField(max_length=8, choices=KeyKind.choices)
    label = models.CharField(max_length=40)
    address = models.CharField(max_length=42, unique=True, help_text="EIP-55 address")
    sealed_key = models.BinaryField(editable=False)
    has_passphrase = models.BooleanField(
        default=False, help_text="The owner set an extra passphrase that every use must give."
    )
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-is_default", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "kind", "label"], name="wallet_label_unique"),
            models.UniqueConstraint(
                fields=["user", "kind"], condition=Q(is_default=True), name="wallet_one_default"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.label} {self.address}"

    @property
    def keystore_filename(self) -> str:
        if self.kind == KeyKind.IDENTITY:
            return "id.keystore"
        return "default.keystore" if self.is_default else f"{self.label}.keystore"
