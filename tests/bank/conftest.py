"""Fixtures for the ledger tests: fresh user accounts, funded through the mint."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from dcp.protocol.credits import UNITS_PER_CREDIT
from portal.bank import services
from portal.bank.models import LedgerAccount

MakeAccount = Callable[..., LedgerAccount]


@pytest.fixture
def make_account(db: None) -> MakeAccount:
    """Build a user account with a unique address, minting `credits` into it first."""

    def make(credits: int = 0) -> LedgerAccount:
        account = services.account_for_address(f"0x{uuid.uuid4().hex}")
        if credits:
            services.mint(
                target=account,
                amount=credits * UNITS_PER_CREDIT,
                idempotency_key=f"grant:{account.address}",
            )
        return account

    return make


@pytest.fixture
def alice(make_account: MakeAccount) -> LedgerAccount:
    """A user holding 10 credits."""
    return make_account(10)


@pytest.fixture
def bob(make_account: MakeAccount) -> LedgerAccount:
    """A user holding nothing."""
    return make_account()
