"""Concurrent spends and replays against a real PostgreSQL server.

SQLite serialises writers, so races only show on PostgreSQL. These tests need committed data that
other connections can see, hence `transaction=True`; each thread opens its own connection and
closes it when done.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from dcp.protocol.credits import UNITS_PER_CREDIT as CREDIT
from portal.bank import selectors, services
from portal.bank.models import Entry, LedgerAccount, Txn
from portal.bank.services import InsufficientFunds

pytestmark = [
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres"),
        reason="needs PostgreSQL: set DATABASE_URL",
    ),
    pytest.mark.django_db(transaction=True),
]


def all_at_once[T](count: int, work: Callable[[int], T]) -> list[T | Exception]:
    """Run `work(n)` in `count` threads released together; each result or the error it raised."""
    barrier = threading.Barrier(count)

    def run(n: int) -> T | Exception:
        try:
            barrier.wait(timeout=30)
            return work(n)
        except Exception as error:
            return error
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def user_holding(address: str, credits: int) -> LedgerAccount:
    account = services.account_for_address(address)
    if credits:
        services.mint(target=account, amount=credits * CREDIT, idempotency_key=f"grant:{address}")
    return account


def running_balances(account: LedgerAccount) -> list[int]:
    """The account's balance after each of its entries, in the order they were written."""
    balance, after_each = 0, []
    for amount in Entry.objects.filter(account=account).order_by("pk").values_list("amount"):
        balance += amount[0]
        after_each.append(balance)
    return after_each


def test_concurrent_spends_never_take_an_account_below_zero() -> None:
    payer = user_holding("0xpayer", 10)
    payee = user_holding("0xpayee", 0)

    def spend_one_credit(n: int) -> Txn:
        return services.transfer(
            source=LedgerAccount.objects.get(pk=payer.pk),
            target=LedgerAccount.objects.get(pk=payee.pk),
            amount=CREDIT,
            idempotency_key=f"spend-{n}",
        )

    outcomes = all_at_once(20, spend_one_credit)

    assert sum(isinstance(outcome, Txn) for outcome in outcomes) == 10
    assert sum(isinstance(outcome, InsufficientFunds) for outcome in outcomes) == 10
    assert selectors.balance_of(payer.address) == 0
    assert selectors.balance_of(payee.address) == 10 * CREDIT
    assert min(running_balances(payer)) == 0
    assert Txn.objects.filter(kind="transfer").count() == 10
    assert selectors.sum_of_balances() == selectors.total_supply() == 10 * CREDIT


def test_concurrent_posts_with_the_same_key_move_credits_once() -> None:
    payer = user_holding("0xpayer", 10)
    payee = user_holding("0xpayee", 0)

    def pay_three_credits(n: int) -> Txn:
        return services.transfer(
            source=LedgerAccount.objects.get(pk=payer.pk),
            target=LedgerAccount.objects.get(pk=payee.pk),
            amount=3 * CREDIT,
            idempotency_key="the-same-key",
        )

    outcomes = all_at_once(10, pay_three_credits)

    assert all(isinstance(outcome, Txn) for outcome in outcomes), outcomes
    assert len({outcome.pk for outcome in outcomes if isinstance(outcome, Txn)}) == 1
    assert Txn.objects.filter(idempotency_key="the-same-key").count() == 1
    assert selectors.balance_of(payer.address) == 7 * CREDIT
    assert selectors.balance_of(payee.address) == 3 * CREDIT


def test_concurrent_refunds_of_one_escrow_return_the_remainder_once() -> None:
    payer = user_holding("0xpayer", 10)
    escrow = services.open_escrow(
        job_ref="job-1", payer=payer, amount=6 * CREDIT, idempotency_key="open"
    )

    def refund(n: int) -> Txn | None:
        return services.refund_escrow(
            escrow=LedgerAccount.objects.get(pk=escrow.pk),
            target=LedgerAccount.objects.get(pk=payer.pk),
            idempotency_key="refund:job-1",
        )

    outcomes = all_at_once(10, refund)

    assert all(isinstance(outcome, Txn) for outcome in outcomes), outcomes
    assert len({outcome.pk for outcome in outcomes if isinstance(outcome, Txn)}) == 1
    assert selectors.balance_of(escrow.address) == 0
    assert selectors.balance_of(payer.address) == 10 * CREDIT


def test_concurrent_payments_from_one_escrow_never_overdraw_it() -> None:
    payer = user_holding("0xpayer", 10)
    workers = [user_holding(f"0xworker{n}", 0) for n in range(2)]
    escrow = services.open_escrow(
        job_ref="job-1", payer=payer, amount=5 * CREDIT, idempotency_key="open"
    )

    def pay_a_batch(n: int) -> Txn | None:
        return services.pay_from_escrow(
            escrow=LedgerAccount.objects.get(pk=escrow.pk),
            payments=[(LedgerAccount.objects.get(pk=w.pk), CREDIT // 2) for w in workers],
            idempotency_key=f"batch-{n}",
        )

    outcomes = all_at_once(12, pay_a_batch)

    assert sum(isinstance(outcome, Txn) for outcome in outcomes) == 5
    assert sum(isinstance(outcome, InsufficientFunds) for outcome in outcomes) == 7
    assert selectors.balance_of(escrow.address) == 0
    assert min(running_balances(escrow)) == 0
    assert selectors.balances_of([w.address for w in workers]) == {
        w.address: 5 * CREDIT // 2 for w in workers
    }
