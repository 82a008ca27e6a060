"""Random sequences of ledger operations keep the books whole.

The state machine runs many examples inside one pytest-django test, and so inside the one
database transaction that the function-scoped `db` fixture opens and rolls back at the end:
hypothesis does not reset the database between examples. Each example therefore opens a savepoint
of its own and rolls it back in teardown(), works on accounts with a fresh uuid prefix, and
compares the total supply with where it stood when the example began, so that it would hold even
beside rows left by others. The fixture is requested by the test function, not by a @given
function, so no fixture is silently shared between examples and no health check is suppressed.

The @given test at the end takes the other documented route: hypothesis.extra.django.TestCase
runs Django's per-test setup and teardown around every example, each in its own transaction.
"""

from __future__ import annotations

import contextlib
import uuid
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from portal.bank import selectors, services
from portal.bank.models import AccountKind, LedgerAccount, Txn
from portal.bank.services import BankError, IdempotencyConflict, InsufficientFunds

USERS = 4
JOBS = 2
# Amounts of the same order as the balances, so that both refusals and successes are common.
amounts = st.integers(min_value=1, max_value=60)
user_index = st.integers(min_value=0, max_value=USERS - 1)
job_index = st.integers(min_value=0, max_value=JOBS - 1)
# The scheduler's commission on a payment: none, whole percents, and fractions of one.
commissions = st.one_of(
    st.just(Decimal(0)),
    st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False),
)


class LedgerMachine(RuleBasedStateMachine):
    """Users, job escrows and a model of every balance kept in Python."""

    def __init__(self) -> None:
        super().__init__()
        # A savepoint per example, rolled back in teardown(): a failing example then leaves
        # nothing behind to fail the next one, and hypothesis can shrink it reliably.
        self.example = transaction.atomic()
        self.example.__enter__()
        self.prefix = uuid.uuid4().hex[:12]
        self.users = [services.account_for_address(f"{self.prefix}:user-{n}") for n in range(USERS)]
        self.escrows = [services.escrow_for_job(f"{self.prefix}:job-{n}") for n in range(JOBS)]
        self.expected = {account.pk: 0 for account in (*self.users, *self.escrows)}
        # The one fees account is shared with everything else: its balance as the example began.
        self.fees = services.system_account(AccountKind.FEES)
        self.fees.refresh_from_db()
        self.expected[self.fees.pk] = self.fees.balance
        self.mint_account = services.system_account(AccountKind.MINT)
        self.supply_at_start = selectors.total_supply()
        self.minted = 0
        self.keys = 0
        # Operations that posted, with their key, to be repeated later: (call, txn id).
        self.posted: list[tuple[dict[str, object], int]] = []

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.example.__exit__(None, None, None)

    def call(self, operation: object, **arguments: object) -> dict[str, object]:
        """An operation and its arguments under a new idempotency key, kept to repeat later."""
        self.keys += 1
        return {"op": operation, **arguments, "idempotency_key": f"{self.prefix}:op-{self.keys}"}

    def move(self, source: LedgerAccount, target: LedgerAccount, amount: int) -> None:
        self.expected[source.pk] -= amount
        self.expected[target.pk] += amount

    def remember(self, call: dict[str, object], posted: object) -> None:
        txn = Txn.objects.get(idempotency_key=call["idempotency_key"])
        assert posted in (txn, *self.escrows)  # open_escrow answers with the escrow
        self.posted.append((call, txn.pk))

    # --- operations ---------------------------------------------------------------------------

    @rule(user=user_index, amount=amounts)
    def mint(self, user: int, amount: int) -> None:
        account = self.users[user]
        call = self.call(services.mint, target=account, amount=amount)
        self.remember(call, call_op(call))
        self.expected[account.pk] += amount
        self.minted += amount

    @rule(source=user_index, recipient=user_index, amount=amounts)
    def transfer(self, source: int, recipient: int, amount: int) -> None:
        payer, payee = self.users[source], self.users[recipient]
        call = self.call(services.transfer, source=payer, target=payee, amount=amount)
        if source == recipient:
            with pytest.raises(BankError, match="itself"):
                call_op(call)
        elif self.expected[payer.pk] < amount:
            with pytest.raises(InsufficientFunds):
                call_op(call)
        else:
            self.remember(call, call_op(call))
            self.move(payer, payee, amount)

    @rule(job=job_index, payer=user_index, amount=amounts)
    def open_escrow(self, job: int, payer: int, amount: int) -> None:
        account, escrow = self.users[payer], self.escrows[job]
        job_ref = escrow.address.removeprefix(services.ESCROW_PREFIX)
        call = self.call(services.open_escrow, job_ref=job_ref, payer=account, amount=amount)
        if self.expected[account.pk] < amount:
            with pytest.raises(InsufficientFunds):
                call_op(call)
            return
        self.remember(call, call_op(call))
        self.move(account, escrow, amount)

    @rule(
        job=job_index,
        payments=st.lists(st.tuples(user_index, amounts), min_size=1, max_size=3),
        commission=commissions,
    )
    def pay_from_escrow(
        self, job: int, payments: list[tuple[int, int]], commission: Decimal
    ) -> None:
        escrow = self.escrows[job]
        legs = [(self.users[user], amount) for user, amount in payments]
        call = self.call(
            services.pay_from_escrow, escrow=escrow, payments=legs, commission_percent=commission
        )
        if self.expected[escrow.pk] < sum(amount for _, amount in legs):
            with pytest.raises(InsufficientFunds):
                call_op(call)
            return
        self.remember(call, call_op(call))
        for account, amount in legs:
            fee = int(amount * commission / 100)  # rounded down to a base unit
            self.move(escrow, account, amount - fee)
            self.move(escrow, self.fees, fee)

    @rule(job=job_index, recipient=user_index)
    def refund_escrow(self, job: int, recipient: int) -> None:
        escrow, account = self.escrows[job], self.users[recipient]
        call = self.call(services.refund_escrow, escrow=escrow, target=account)
        remaining = self.expected[escrow.pk]
        refund = call_op(call)
        if remaining == 0:
            assert refund is None
            return
        self.remember(call, refund)
        self.move(escrow, account, remaining)

    @precondition(lambda self: self.posted)
    @rule(data=st.data())
    def repeat_an_earlier_operation(self, data: st.DataObject) -> None:
        call, txn_id = data.draw(st.sampled_from(self.posted), label="repeated")
        replayed = call_op(call)
        if isinstance(replayed, Txn):
            assert replayed.pk == txn_id
        assert Txn.objects.get(idempotency_key=call["idempotency_key"]).pk == txn_id

    @precondition(lambda self: any("amount" in call for call, _ in self.posted))
    @rule(data=st.data(), extra=amounts)
    def repeat_a_key_with_another_amount(self, data: st.DataObject, extra: int) -> None:
        with_amounts = [call for call, _ in self.posted if "amount" in call]
        call = data.draw(st.sampled_from(with_amounts), label="changed")
        amount = call["amount"]
        assert isinstance(amount, int)
        with pytest.raises(IdempotencyConflict):
            call_op({**call, "amount": amount + extra})

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def every_transaction_balances(self) -> None:
        ours = Txn.objects.filter(idempotency_key__startswith=self.prefix)
        totals = ours.annotate(total=Sum("entries__amount"), legs=Count("entries"))
        assert not totals.filter(~Q(total=0) | Q(legs__lt=2)).exists()

    @invariant()
    def no_balance_but_the_mints_is_below_zero(self) -> None:
        negative = LedgerAccount.objects.exclude(kind=AccountKind.MINT).filter(balance__lt=0)
        assert not negative.exists()

    @invariant()
    def every_cached_balance_equals_the_sum_of_its_entries(self) -> None:
        ours = LedgerAccount.objects.filter(pk__in=[*self.expected, self.mint_account.pk])
        recomputed = ours.annotate(from_entries=Coalesce(Sum("entries__amount"), 0))
        assert not recomputed.exclude(balance=F("from_entries")).exists()

    @invariant()
    def supply_equals_what_was_minted_and_what_is_held(self) -> None:
        supply = selectors.total_supply()
        assert supply - self.supply_at_start == self.minted
        assert supply == selectors.sum_of_balances()

    @invariant()
    def the_model_agrees_with_the_database(self) -> None:
        accounts = (*self.users, *self.escrows)
        held = selectors.balances_of([account.address for account in accounts])
        assert held == {account.address: self.expected[account.pk] for account in accounts}


def call_args(call: dict[str, object]) -> dict[str, object]:
    return {name: value for name, value in call.items() if name != "op"}


def call_op(call: dict[str, object]) -> object:
    operation = call["op"]
    assert callable(operation)
    return operation(**call_args(call))


@pytest.mark.django_db
def test_random_ledger_operations_keep_the_books_whole() -> None:
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(max_examples=50, stateful_step_count=30, deadline=None),
    )


class TransfersInTheirOwnTransactionTest(TestCase):
    """Each example starts from an empty ledger: hypothesis rolls the database back in between."""

    @settings(max_examples=50, deadline=None)
    @given(
        grants=st.lists(st.integers(min_value=1, max_value=100), min_size=3, max_size=3),
        transfers=st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=2),
                st.integers(min_value=0, max_value=2),
                st.integers(min_value=1, max_value=150),
            ),
            max_size=20,
        ),
    )
    def test_transfers_never_create_or_destroy_credits(
        self, grants: list[int], transfers: list[tuple[int, int, int]]
    ) -> None:
        assert not Txn.objects.exists()
        users = [services.account_for_address(f"user-{n}") for n in range(3)]
        for user, amount in zip(users, grants, strict=True):
            services.mint(target=user, amount=amount, idempotency_key=f"grant-{user.pk}")
        for n, (source, target, amount) in enumerate(transfers):
            with contextlib.suppress(BankError):  # too few credits, or to itself
                services.transfer(
                    source=users[source],
                    target=users[target],
                    amount=amount,
                    idempotency_key=f"t-{n}",
                )

        held = sorted(selectors.balances_of([user.address for user in users]).values())
        assert sum(held) == selectors.total_supply() == sum(grants)
        assert held[0] >= 0
