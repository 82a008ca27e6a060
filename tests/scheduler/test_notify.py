"""Announcements go out once, after their transaction commits, in the order they were made."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from portal.scheduler import notify

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def delivered(monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """Each delivery to the channel layer, as the list of announcements it carried."""
    deliveries: list[list[Any]] = []

    async def deliver(items: list[Any]) -> None:
        deliveries.append(list(items))

    monkeypatch.setattr(notify, "deliver", deliver)
    return deliveries


def test_a_transactions_announcements_go_out_together_after_commit(delivered):
    with transaction.atomic():
        notify.work_available()
        notify.announce(notify.event("j1", "status", {"total": 1}))
        assert delivered == []
    assert delivered == [
        [
            notify.Send(notify.WORKERS_GROUP, {"type": "work.available"}),
            notify.event("j1", "status", {"total": 1}),
        ]
    ]


def test_a_rolled_back_transaction_announces_nothing(delivered):
    with pytest.raises(RuntimeError), transaction.atomic():
        notify.work_available()
        raise RuntimeError("the write failed")
    notify.work_available()  # outside a transaction: at once
    assert delivered == [[notify.Send(notify.WORKERS_GROUP, {"type": "work.available"})]]


def test_what_a_rolled_back_savepoint_announced_is_dropped(delivered):
    with transaction.atomic():
        notify.announce(notify.event("j1", "result", [1]))
        with pytest.raises(RuntimeError), transaction.atomic():
            notify.announce(notify.event("j1", "error", {}))
            raise RuntimeError("the inner write failed")
        notify.announce(notify.event("j1", "complete", {"total": 1}))
    sent = [item for delivery in delivered for item in delivery]
    assert sent == [
        notify.event("j1", "result", [1]),
        notify.event("j1", "complete", {"total": 1}),
    ]


def test_a_committed_savepoint_keeps_the_order_of_announcements(delivered):
    with transaction.atomic():
        notify.announce(notify.event("j1", "result", [1]))
        with transaction.atomic():
            notify.announce(notify.event("j1", "error", {}))
        notify.announce(notify.event("j1", "complete", {"total": 1}))
    sent = [item for delivery in delivered for item in delivery]
    assert [item.message["event"] for item in sent] == ["result", "error", "complete"]


def test_a_cancel_tells_the_watchers_before_the_workers():
    cancel, abort = notify.cancel_announcements("j2", "ECANCELLED", "why")
    assert cancel == notify.event("j2", "cancel", {"code": "ECANCELLED", "reason": "why"})
    assert abort == notify.Send(notify.WORKERS_GROUP, {"type": "job.abort", "job": "j2"})


def test_the_deploying_connection_watches_its_job_from_the_commit_that_created_it(
    delivered, first_dev
):
    """Workers poll as well as being woken: a job is theirs to take once it commits, and a fast
    worker's result must not reach the job's group before its deploying client joined it."""
    from portal.scheduler.services import JobSpec, deploy_job
    from portal.wallet.models import Key

    payer = Key.objects.get(user=first_dev, is_default=True).address
    spec = JobSpec(
        ref="watch-from-the-start",
        language="python",
        source="def work(x):\n    return x\n",
        args=[],
        input_kind="values",
        values=[1, 2, 3],
        offer=1,
    )
    job, _ = deploy_job(
        owner=first_dev,
        identity="0x" + "2" * 40,
        payer=payer,
        spec=spec,
        subscriber="client-channel",
    )
    join = notify.Join(notify.job_group(job.id), "client-channel")
    assert delivered[0] == [join]  # the job's own commit, before its values could be claimed
    woken = [
        n
        for n, items in enumerate(delivered)
        if notify.Send(notify.WORKERS_GROUP, notify.WORK_AVAILABLE) in items
    ]
    assert woken and woken[0] > 0
