"""Sign-up hooks: a verified email address gets its default account key."""

from __future__ import annotations

from typing import Any

from allauth.account.signals import email_confirmed
from django.dispatch import receiver


@receiver(email_confirmed)
def give_default_account(sender: Any, request: Any, email_address: Any, **kwargs: Any) -> None:
    from portal.wallet.services import ensure_default_account

    ensure_default_account(user=email_address.user)
