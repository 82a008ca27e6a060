"""Keys in the admin show addresses only: the sealed private key is never displayed."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Key


@admin.register(Key)
class KeyAdmin(admin.ModelAdmin):
    list_display = (
        "address",
        "kind",
        "label",
        "user",
        "is_default",
        "has_passphrase",
        "created_at",
    )
    list_filter = ("kind",)
    search_fields = ("address", "label", "user__email")
    fields = ("user", "kind", "label", "address", "is_default", "has_passphrase", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
