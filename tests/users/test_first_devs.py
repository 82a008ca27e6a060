"""Joining First Devs grants 10 credits exactly once and the right to deploy."""

from __future__ import annotations

from dcp.protocol.credits import to_units
from portal.bank.selectors import balance_of, sum_of_balances, total_supply
from portal.users.services import join_first_devs
from portal.wallet.models import Key


def test_joining_first_devs_credits_ten_credits_once(user):
    address = Key.objects.get(user=user, is_default=True).address
    assert join_first_devs(user=user) is True
    assert join_first_devs(user=user) is False
    user.refresh_from_db()
    assert user.is_first_dev
    assert balance_of(address) == to_units(10)
    assert total_supply() == sum_of_balances() == to_units(10)


def test_a_user_without_a_default_account_gets_one_on_joining(db):
    from portal.users.models import User

    person = User.objects.create_user("late@example.com", "pw-123456789")
    join_first_devs(user=person)
    address = Key.objects.get(user=person, is_default=True).address
    assert balance_of(address) == to_units(10)
