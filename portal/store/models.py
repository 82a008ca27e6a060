"""The content-addressed store: objects named by the SHA-256 of their bytes, and who stored them.

An object's bytes live in one file, `STORE_DIR/<first two hex digits>/<sha256>`, written once
and never changed; its row exists only once the file is complete. Each user who stored (or
claimed) an object owns it: what a user owns counts against their quota, and their jobs may
reference only what they own. The same bytes stored by many users are one file.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class StoredObject(models.Model):
    sha256 = models.CharField(
        max_length=64, primary_key=True, help_text="SHA-256 of the bytes, 64 lowercase hex."
    )
    size = models.BigIntegerField(help_text="Bytes.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(size__gte=0), name="store_size_not_negative")
        ]

    def __str__(self) -> str:
        return f"{self.sha256[:12]}… ({self.size} bytes)"


class Ownership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stored_objects"
    )
    stored_object = models.ForeignKey(
        StoredObject, on_delete=models.CASCADE, related_name="ownerships"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "stored_object"], name="store_one_ownership_per_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} owns {self.stored_object}"
