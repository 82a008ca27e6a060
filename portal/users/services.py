"""Writes about users: First Devs enrolment."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from dcp.protocol.credits import UNITS_PER_CREDIT
from portal.bank import services as bank
from portal.wallet.services import ensure_default_account

from .models import User

FIRST_DEVS_GRANT = 10 * UNITS_PER_CREDIT


@transaction.atomic
def join_first_devs(*, user: User) -> bool:
    """Enrol the user once: grants 10 credits to the default account and the right to deploy.

    Returns False when the user had already joined (and nothing changes).
    """
    locked = User.objects.select_for_update().get(pk=user.pk)
    if locked.first_dev_since is not None:
        return False
    account_key = ensure_default_account(user=locked)
    bank.mint(
        target=bank.account_for_address(account_key.address),
        amount=FIRST_DEVS_GRANT,
        idempotency_key=f"first-devs:{locked.pk}",
        memo="First Devs grant",
    )
    locked.first_dev_since = timezone.now()
    locked.save(update_fields=["first_dev_since"])
    user.first_dev_since = locked.first_dev_since
    return True
