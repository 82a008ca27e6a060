"""`{% api_keys_section as api %}`: what the First Devs tab's API keys section shows."""

from __future__ import annotations

from typing import Any

from django import template

from portal.api.models import ApiKey
from portal.wallet.models import Key, KeyKind

register = template.Library()


@register.simple_tag(takes_context=True)
def api_keys_section(context: template.Context) -> dict[str, Any]:
    request = context["request"]
    keys = list(Key.objects.filter(user=request.user))
    return {
        "keys": ApiKey.objects.filter(user=request.user, revoked_at__isnull=True).select_related(
            "identity", "account"
        ),
        "identities": [key for key in keys if key.kind == KeyKind.IDENTITY],
        "accounts": [key for key in keys if key.kind == KeyKind.ACCOUNT],
        # Set by the create view for the one response that shows a new key's token.
        "new_key": getattr(request, "new_api_key", ""),
    }
