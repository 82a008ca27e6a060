"""People the portal's pages are tried with, besides tests/conftest.py's First Dev."""

from __future__ import annotations

from typing import Any

import pytest

from portal.users.services import join_first_devs
from portal.wallet.services import ensure_default_account


@pytest.fixture
def volunteer(django_user_model: Any) -> Any:
    """A user who computes (a default account, not a First Dev)."""
    person = django_user_model.objects.create_user("grace@example.com", "pw-123456789")
    ensure_default_account(user=person)
    return person


@pytest.fixture
def stranger(django_user_model: Any) -> Any:
    """Another First Dev, with jobs and accounts of her own."""
    person = django_user_model.objects.create_user("eve@example.com", "pw-123456789")
    ensure_default_account(user=person)
    join_first_devs(user=person)
    return person
