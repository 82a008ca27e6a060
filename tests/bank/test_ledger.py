"""The ledger as its callers see it: minting, transfers, escrow, idempotency and refusals."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from dcp.protocol.credits import UNITS_PER_CREDIT as CREDIT
from portal.bank import selectors, services
from portal.bank.models import AccountKind, Entry, LedgerAccount, Txn
from portal.bank.services import BankError, IdempotencyConflict, InsufficientFunds

pytestmark = pytest.mark.django_db

MakeAccount = Callable[..., LedgerAccount]
Snapshot = tuple[dict[str, int], int, int]


def ledger_snapshot() -> Snapshot:
    """Every balance by address, and how many transactions and entries exist."""
    balances = dict(LedgerAccount.objects.values_list("address", "balance"))
    return balances, Txn.objects.count(), Entry.objects.count()


def balance(account: LedgerAccount) -> int:
    return selectors.balance_of(account.address)


def funded_escrow(payer: LedgerAccount, credits: int, job_ref: str = "job-1") -> LedgerAccount:
    return services.open_escrow(
        job_ref=job_ref, payer=payer, amount=credits * CREDIT, idempotency_key=f"open:{job_ref}"
    )


# --- minting and transfers --------------------------------------------------------------------


def test_mint_credits_the_target_and_debits_the_mint(bob: LedgerAccount) -> None:
    txn = services.mint(target=bob, amount=7 * CREDIT, idempotency_key="grant-7", memo="welcome")

    mint = services.system_account(AccountKind.MINT)
    assert balance(bob) == 7 * CREDIT
    assert mint.balance == -7 * CREDIT
    assert selectors.total_supply() == 7 * CREDIT
    assert sorted(txn.entries.values_list("account__address", "amount")) == sorted(
        [(mint.address, -7 * CREDIT), (bob.address, 7 * CREDIT)]
    )
    assert (txn.kind, txn.memo) == ("mint", "welcome")


def test_transfer_moves_the_exact_amount_from_source_to_target(
    alice: LedgerAccount, bob: LedgerAccount
) -> None:
    services.transfer(source=alice, target=bob, amount=2_250_000_001, idempotency_key="pay-bob")

    assert balance(alice) == 10 * CREDIT - 2_250_000_001
    assert balance(bob) == 2_250_000_001
    assert selectors.sum_of_balances() == selectors.total_supply() == 10 * CREDIT


def test_transfer_updates_the_callers_account_objects(
    alice: LedgerAccount, bob: LedgerAccount
) -> None:
    services.transfer(source=alice, target=bob, amount=3 * CREDIT, idempotency_key="pay-bob")

    assert (alice.balance, bob.balance) == (7 * CREDIT, 3 * CREDIT)


def test_transfer_can_spend_the_whole_balance(alice: LedgerAccount, bob: LedgerAccount) -> None:
    services.transfer(source=alice, target=bob, amount=10 * CREDIT, idempotency_key="all-in")

    assert (balance(alice), balance(bob)) == (0, 10 * CREDIT)


def test_an_account_cannot_transfer_to_itself(alice: LedgerAccount) -> None:
    before = ledger_snapshot()

    with pytest.raises(BankError, match="itself"):
        services.transfer(source=alice, target=alice, amount=CREDIT, idempotency_key="loop")

    assert ledger_snapshot() == before


# --- refusals ---------------------------------------------------------------------------------


def overspend_transfer(alice: LedgerAccount, bob: LedgerAccount) -> None:
    services.transfer(source=alice, target=bob, amount=10 * CREDIT + 1, idempotency_key="over")


def overspend_into_escrow(alice: LedgerAccount, bob: LedgerAccount) -> None:
    services.open_escrow(job_ref="big", payer=alice, amount=11 * CREDIT, idempotency_key="over")


def overspend_from_escrow(alice: LedgerAccount, bob: LedgerAccount) -> None:
    escrow = services.escrow_for_job("job-1")
    services.pay_from_escrow(
        escrow=escrow, payments=[(alice, 3 * CREDIT), (bob, 3 * CREDIT)], idempotency_key="over"
    )


def overspend_an_empty_account(alice: LedgerAccount, bob: LedgerAccount) -> None:
    services.transfer(source=bob, target=alice, amount=1, idempotency_key="over")


@pytest.mark.parametrize(
    "overspend",
    [overspend_transfer, overspend_into_escrow, overspend_from_escrow, overspend_an_empty_account],
)
def test_spending_more_than_the_balance_is_refused_and_changes_nothing(
    alice: LedgerAccount, bob: LedgerAccount, overspend: Callable[..., None]
) -> None:
    funded_escrow(alice, 5)
    services.escrow_for_job("big")  # so that the refusal cannot be told apart by a new account
    before = ledger_snapshot()

    with pytest.raises(InsufficientFunds):
        overspend(alice, bob)

    assert ledger_snapshot() == before
    assert not Txn.objects.filter(idempotency_key="over").exists()


def test_a_refused_key_can_be_used_once_the_funds_are_there(
    alice: LedgerAccount, bob: LedgerAccount
) -> None:
    with pytest.raises(InsufficientFunds):
        services.transfer(source=bob, target=alice, amount=CREDIT, idempotency_key="later")
    services.transfer(source=alice, target=bob, amount=CREDIT, idempotency_key="first")

    services.transfer(source=bob, target=alice, amount=CREDIT, idempotency_key="later")

    assert (balance(alice), balance(bob)) == (10 * CREDIT, 0)


NOT_POSITIVE_WHOLE_UNITS = [0, -1, -CREDIT, 1.5, 1.0, "1", Decimal(1), True, False, None]


def post_mint(alice: LedgerAccount, bob: LedgerAccount, amount: Any) -> object:
    return services.mint(target=bob, amount=amount, idempotency_key="bad")


def post_transfer(alice: LedgerAccount, bob: LedgerAccount, amount: Any) -> object:
    return services.transfer(source=alice, target=bob, amount=amount, idempotency_key="bad")


def post_open_escrow(alice: LedgerAccount, bob: LedgerAccount, amount: Any) -> object:
    return services.open_escrow(job_ref="job-2", payer=alice, amount=amount, idempotency_key="bad")


def post_payment(alice: LedgerAccount, bob: LedgerAccount, amount: Any) -> object:
    escrow = services.escrow_for_job("job-1")
    return services.pay_from_escrow(
        escrow=escrow, payments=[(bob, CREDIT), (alice, amount)], idempotency_key="bad"
    )


@pytest.mark.parametrize("amount", NOT_POSITIVE_WHOLE_UNITS, ids=repr)
@pytest.mark.parametrize("post", [post_mint, post_transfer, post_open_escrow])
def test_amounts_that_are_not_positive_whole_units_are_refused(
    alice: LedgerAccount, bob: LedgerAccount, post: Callable[..., object], amount: Any
) -> None:
    services.escrow_for_job("job-2")
    before = ledger_snapshot()

    with pytest.raises(BankError, match="positive whole number"):
        post(alice, bob, amount)

    assert ledger_snapshot() == before


@pytest.mark.parametrize("amount", [-1, -CREDIT, 1.5, 1.0, "1", Decimal(1), True], ids=repr)
def test_a_payment_batch_with_one_bad_amount_is_refused_whole(
    alice: LedgerAccount, bob: LedgerAccount, amount: Any
) -> None:
    funded_escrow(alice, 5)
    before = ledger_snapshot()

    with pytest.raises(BankError, match="positive whole number"):
        post_payment(alice, bob, amount)

    assert ledger_snapshot() == before


def test_zero_payments_in_a_batch_are_skipped(alice: LedgerAccount, bob: LedgerAccount) -> None:
    funded_escrow(alice, 5)

    payment = post_payment(alice, bob, 0)

    assert isinstance(payment, Txn)
    assert payment.entries.count() == 2
    assert balance(bob) == CREDIT


def test_a_payment_batch_with_nothing_to_pay_posts_nothing(alice: LedgerAccount) -> None:
    escrow = funded_escrow(alice, 5)
    before = ledger_snapshot()

    assert services.pay_from_escrow(escrow=escrow, payments=[], idempotency_key="none") is None
    assert (
        services.pay_from_escrow(escrow=escrow, payments=[(alice, 0)], idempotency_key="z") is None
    )

    assert ledger_snapshot() == before


# --- idempotency ------------------------------------------------------------------------------


def repeat_mint(alice: LedgerAccount, bob: LedgerAccount) -> Txn | None:
    return services.mint(target=bob, amount=4 * CREDIT, idempotency_key="once")


def repeat_transfer(alice: LedgerAccount, bob: LedgerAccount) -> Txn | None:
    return services.transfer(source=alice, target=bob, amount=4 * CREDIT, idempotency_key="once")


def repeat_open_escrow(alice: LedgerAccount, bob: LedgerAccount) -> Txn | None:
    services.open_escrow(job_ref="job-2", payer=alice, amount=4 * CREDIT, idempotency_key="once")
    return Txn.objects.get(idempotency_key="once")


def repeat_payment(alice: LedgerAccount, bob: LedgerAccount) -> Txn | None:
    escrow = services.escrow_for_job("job-1")
    return services.pay_from_escrow(
        escrow=escrow, payments=[(bob, 3 * CREDIT), (alice, CREDIT)], idempotency_key="once"
    )


def repeat_refund(alice: LedgerAccount, bob: LedgerAccount) -> Txn | None:
    escrow = services.escrow_for_job("job-1")
    return services.refund_escrow(escrow=escrow, target=bob, idempotency_key="once")


@pytest.mark.parametrize(
    "operation",
    [repeat_mint, repeat_transfer, repeat_open_escrow, repeat_payment, repeat_refund],
)
def test_repeating_an_operation_with_the_same_key_moves_credits_once(
    alice: LedgerAccount, bob: LedgerAccount, operation: Callable[..., Txn | None]
) -> None:
    funded_escrow(alice, 5)
    first = operation(alice, bob)
    after_first = ledger_snapshot()

    second = operation(alice, bob)
    third = operation(alice, bob)

    assert first is not None
    assert second == third == first
    assert ledger_snapshot() == after_first
    assert selectors.sum_of_balances() == selectors.total_supply()


def test_repeating_a_refund_after_the_escrow_was_topped_up_moves_nothing(
    alice: LedgerAccount, bob: LedgerAccount
) -> None:
    escrow = funded_escrow(alice, 5)
    refund = services.refund_escrow(escrow=escrow, target=alice, idempotency_key="refund")
    services.open_escrow(job_ref="job-1", payer=alice, amount=CREDIT, idempotency_key="top-up")

    again = services.refund_escrow(escrow=escrow, target=alice, idempotency_key="refund")

    assert again == refund
    assert balance(escrow) == CREDIT


def conflicting_mint(alice: LedgerAccount, bob: LedgerAccount) -> None:
    services.mint(target=bob, amount=5 * CREDIT, idempotency_key="once")


def conflicting_transfer(alice: LedgerAccount, bob: LedgerAccount) -> None:
    services.transfer(source=alice, target=bob, amount=CREDIT + 1, idempotency_key="once")


def conflicting_target(alice: LedgerAccount, bob: LedgerAccount) -> None:
    services.transfer(source=bob, target=alice, amount=4 * CREDIT, idempotency_key="once")


def conflicting_escrow(alice: LedgerAccount, bob: LedgerAccount) -> None:
    services.open_escrow(job_ref="job-2", payer=alice, amount=CREDIT, idempotency_key="once")


def conflicting_payment(alice: LedgerAccount, bob: LedgerAccount) -> None:
    escrow = services.escrow_for_job("job-1")
    services.pay_from_escrow(escrow=escrow, payments=[(bob, 4 * CREDIT)], idempotency_key="once")


def conflicting_refund(alice: LedgerAccount, bob: LedgerAccount) -> None:
    escrow = services.escrow_for_job("job-1")
    services.refund_escrow(escrow=escrow, target=alice, idempotency_key="once")


@pytest.mark.parametrize(
    "conflict",
    [
        conflicting_mint,
        conflicting_transfer,
        conflicting_target,
        conflicting_escrow,
        conflicting_payment,
        conflicting_refund,
    ],
)
def test_reusing_a_key_for_a_different_movement_is_a_conflict(
    alice: LedgerAccount, bob: LedgerAccount, conflict: Callable[..., None]
) -> None:
    funded_escrow(alice, 5)
    services.escrow_for_job("job-2")
    services.transfer(source=alice, target=bob, amount=4 * CREDIT, idempotency_key="once")
    before = ledger_snapshot()

    with pytest.raises(IdempotencyConflict):
        conflict(alice, bob)

    assert ledger_snapshot() == before


@pytest.mark.parametrize("amount", [4 * CREDIT, 6 * CREDIT])
def test_reusing_a_mint_key_with_a_different_amount_is_a_conflict(
    bob: LedgerAccount, amount: int
) -> None:
    services.mint(target=bob, amount=5 * CREDIT, idempotency_key="grant")

    with pytest.raises(IdempotencyConflict) as refused:
        services.mint(target=bob, amount=amount, idempotency_key="grant")

    assert refused.value.code == "EIDEMPOTENCY"
    assert balance(bob) == 5 * CREDIT


def test_reusing_a_refund_key_for_another_escrow_is_a_conflict(
    alice: LedgerAccount, bob: LedgerAccount
) -> None:
    first = funded_escrow(alice, 2, job_ref="job-1")
    second = funded_escrow(alice, 3, job_ref="job-2")
    services.refund_escrow(escrow=first, target=alice, idempotency_key="refund")

    with pytest.raises(IdempotencyConflict):
        services.refund_escrow(escrow=second, target=alice, idempotency_key="refund")

    assert balance(second) == 3 * CREDIT


# --- escrow -----------------------------------------------------------------------------------


def test_escrow_pays_several_recipients_in_one_transaction_and_refunds_the_rest(
    alice: LedgerAccount, bob: LedgerAccount, make_account: MakeAccount
) -> None:
    carol = make_account()
    escrow = services.open_escrow(
        job_ref="job-1", payer=alice, amount=6 * CREDIT, idempotency_key="open"
    )
    assert (escrow.kind, escrow.address) == (AccountKind.ESCROW, "escrow:job-1")
    assert (balance(alice), balance(escrow)) == (4 * CREDIT, 6 * CREDIT)

    payment = services.pay_from_escrow(
        escrow=escrow, payments=[(bob, 1_500_000_000), (carol, 2 * CREDIT)], idempotency_key="b1"
    )
    assert payment is not None
    assert payment.entries.count() == 3
    assert (balance(bob), balance(carol)) == (1_500_000_000, 2 * CREDIT)

    refund = services.refund_escrow(escrow=escrow, target=alice, idempotency_key="refund")

    assert refund is not None
    assert refund.entries.get(account=alice).amount == 2_500_000_000
    assert balance(alice) == 4 * CREDIT + 2_500_000_000
    assert balance(escrow) == 0
    assert selectors.sum_of_balances() == selectors.total_supply() == 10 * CREDIT


def test_opening_an_escrow_again_with_a_new_key_tops_it_up(alice: LedgerAccount) -> None:
    first = funded_escrow(alice, 2)
    second = services.open_escrow(
        job_ref="job-1", payer=alice, amount=CREDIT, idempotency_key="top-up"
    )

    assert second.pk == first.pk
    assert balance(first) == 3 * CREDIT


def test_refunding_an_empty_escrow_returns_none(alice: LedgerAccount) -> None:
    escrow = services.escrow_for_job("never-funded")
    before = ledger_snapshot()

    assert services.refund_escrow(escrow=escrow, target=alice, idempotency_key="r") is None
    assert ledger_snapshot() == before


def test_a_second_refund_after_a_full_refund_moves_nothing(alice: LedgerAccount) -> None:
    escrow = funded_escrow(alice, 5)
    services.refund_escrow(escrow=escrow, target=alice, idempotency_key="refund-1")
    after_refund = ledger_snapshot()

    again = services.refund_escrow(escrow=escrow, target=alice, idempotency_key="refund-2")

    assert again is None
    assert ledger_snapshot() == after_refund
    assert balance(alice) == 10 * CREDIT


def test_a_refund_reads_the_escrow_from_the_database_not_the_callers_copy(
    alice: LedgerAccount, bob: LedgerAccount
) -> None:
    escrow = funded_escrow(alice, 5)
    stale = LedgerAccount.objects.get(pk=escrow.pk)
    services.pay_from_escrow(escrow=escrow, payments=[(bob, 2 * CREDIT)], idempotency_key="b1")

    refund = services.refund_escrow(escrow=stale, target=alice, idempotency_key="refund")

    assert refund is not None
    assert balance(alice) == 8 * CREDIT
    assert balance(escrow) == 0


# --- the database's own guarantees ------------------------------------------------------------


def test_the_database_refuses_a_negative_balance_even_without_the_services(
    alice: LedgerAccount,
) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.filter(pk=alice.pk).update(balance=-1)

    assert balance(alice) == 10 * CREDIT


def test_only_the_mint_may_hold_a_negative_balance(alice: LedgerAccount) -> None:
    mint = services.system_account(AccountKind.MINT)

    LedgerAccount.objects.filter(pk=mint.pk).update(balance=-1)
    for kind in (AccountKind.USER, AccountKind.FEES, AccountKind.ESCROW):
        account = LedgerAccount.objects.create(address=f"negative:{kind}", kind=kind)
        with pytest.raises(IntegrityError), transaction.atomic():
            LedgerAccount.objects.filter(pk=account.pk).update(balance=-1)


def test_the_database_refuses_an_entry_of_zero_credits(alice: LedgerAccount) -> None:
    txn = Txn.objects.create(idempotency_key="empty", kind="transfer")

    with pytest.raises(IntegrityError), transaction.atomic():
        Entry.objects.create(txn=txn, account=alice, amount=0)


def test_the_cached_balance_equals_the_sum_of_the_entries(
    alice: LedgerAccount, bob: LedgerAccount
) -> None:
    escrow = funded_escrow(alice, 5)
    services.transfer(source=alice, target=bob, amount=3, idempotency_key="t1")
    services.pay_from_escrow(escrow=escrow, payments=[(bob, 7), (alice, 11)], idempotency_key="p")
    services.refund_escrow(escrow=escrow, target=alice, idempotency_key="r")
    mint = services.system_account(AccountKind.MINT)

    for account in (alice, bob, escrow, mint):
        account.refresh_from_db()
        assert account.balance == selectors.entries_balance(account)


def test_an_unknown_address_holds_nothing(alice: LedgerAccount) -> None:
    assert selectors.balance_of("0xnobody") == 0
    assert selectors.balances_of([alice.address, "0xnobody"]) == {
        alice.address: 10 * CREDIT,
        "0xnobody": 0,
    }
