"""A job that asks for verification pays only for results that workers of distinct users agree
on: a lying worker is outvoted, unpaid, loses its standing and is suspended; results that never
agree cancel the job with ENOQUORUM; trusted workers may be accepted alone. Driven over the
client and worker sockets, on SQLite and (with DATABASE_URL) PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from dcp.protocol.credits import to_units
from portal.bank.selectors import balance_of, sum_of_balances, total_supply
from portal.scheduler.models import Job, JobStatus, WorkerReputation
from tests.scheduler.conftest import (
    connect_client,
    connect_worker,
    make_volunteer,
    receive_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

SIX = {"kind": "range", "start": 1, "end": 6, "step": 1}


# Every tab a test opened, kept open until the test ends: a communicator that is garbage
# collected stops its consumer, and a consumer stopped while it holds the Redis layer's receive
# lock drops the message it was reading, which may be another socket's (the client's events).
OPEN_TABS: list[Any] = []


@pytest.fixture(autouse=True)
def tabs_live_through_the_test() -> Any:
    yield
    OPEN_TABS.clear()


async def take_turn(user: Any, fn: Any) -> tuple[dict[str, Any] | None, Any]:
    """One worker tab of `user` asks for work and answers its task with fn(datum); returns
    (the ack, or None when it was given nothing) and the still-open socket, which asks for
    no more: its room, one job's six slices, is used up."""
    worker = await connect_worker(user, cores=6)
    OPEN_TABS.append(worker)
    await worker.send_json_to({"type": "ready", "capacity": 6})
    frame = await worker.receive_json_from(timeout=5)
    if frame["type"] != "task":
        assert frame["type"] == "waiting", frame
        return None, worker
    results = [{"slice": s["slice"], "value": fn(s["datum"]), "ms": 1.0} for s in frame["slices"]]
    await worker.send_json_to(
        {"type": "result", "id": "r", "job": frame["job"]["id"], "results": results}
    )
    return await receive_until(worker, "ack"), worker


async def address_of(user: Any) -> str:
    return await sync_to_async(lambda: user.keys.get(is_default=True).address)()


async def events_until(client: Any, last: str) -> list[dict[str, Any]]:
    events = []
    while True:
        frame = await client.receive_json_from(timeout=10)
        if frame["type"] == "event":
            events.append(frame)
            if frame["event"] == last:
                return events


async def test_a_lying_worker_is_outvoted_unpaid_and_suspended(
    deployer, volunteer, django_user_model
):
    liar = await sync_to_async(make_volunteer)(django_user_model, "liar@example.com")
    other = await sync_to_async(make_volunteer)(django_user_model, "third@example.com")
    client = await connect_client(deployer)
    await client.send_json_to(deployer.deploy(input=SIX, verify={"quorum": 2}))
    job_id = (await receive_until(client, "accepted"))["job"]
    # The escrow holds two results of each slice: 6 x 0.01 x 2.
    assert await sync_to_async(balance_of)(deployer.account) == to_units("9.88")

    lied, liar_tab = await take_turn(liar, lambda x: x * 2 + 1)
    assert lied is not None and lied["accepted"] == 6 and lied["earned"] == "0"
    again, second_tab = await take_turn(liar, lambda x: x * 2 + 1)
    assert again is None, "a user never verifies their own result, from any tab"
    honest, _ = await take_turn(volunteer, lambda x: x * 2)
    assert honest is not None and honest["earned"] == "0"  # disputed: no quorum yet
    decided, _ = await take_turn(other, lambda x: x * 2)
    assert decided is not None and decided["earned"] == "0.06"

    events = await events_until(client, "complete")
    duplicates = [e["data"] for e in events if e["event"] == "duplicate-result"]
    assert {(d["slice"], d["disputed"], d["accepted"]) for d in duplicates} == {
        *((n, True, False) for n in range(1, 7)),
        *((n, False, True) for n in range(1, 7)),
    }
    final = [e["data"] for e in events if e["event"] == "status"][-1]
    assert final["verification"] == {"quorum": 2, "pending": 0, "disputed": 0, "rejected": 6}
    await client.send_json_to({"type": "results", "id": 5, "job": job_id, "start": 1, "end": 6})
    assert (await receive_until(client, "results"))["results"] == [[n, n * 2] for n in range(1, 7)]

    # The two honest users are paid for each slice, the liar for nothing; the escrow is spent.
    assert await sync_to_async(balance_of)(await address_of(volunteer)) == to_units("0.06")
    assert await sync_to_async(balance_of)(await address_of(other)) == to_units("0.06")
    assert await sync_to_async(balance_of)(await address_of(liar)) == 0
    assert await sync_to_async(balance_of)(deployer.account) == to_units("9.88")
    assert await sync_to_async(total_supply)() == await sync_to_async(sum_of_balances)()
    standing = await sync_to_async(WorkerReputation.objects.get)(user=liar)
    assert (standing.streak, standing.rejected) == (0, 6)
    assert standing.suspended_until is not None
    # The liar's tab is told it is suspended, and a new tab gets no work.
    suspended = await receive_until(liar_tab, "error")
    assert suspended["code"] == "ESUSPENDED"
    await second_tab.send_json_to({"type": "ready", "capacity": 1})
    refused = await receive_until(second_tab, "error")
    assert refused["code"] == "ESUSPENDED" and "lost 3 verification votes" in refused["message"]


async def test_results_that_never_agree_cancel_the_job_and_pay_nobody(
    deployer, volunteer, django_user_model
):
    other = await sync_to_async(make_volunteer)(django_user_model, "third@example.com")
    client = await connect_client(deployer)
    verify = {"quorum": 2, "max_results": 2}
    await client.send_json_to(deployer.deploy(input=SIX, verify=verify, offer="0.5"))
    job_id = (await receive_until(client, "accepted"))["job"]
    assert await sync_to_async(balance_of)(deployer.account) == to_units(4)

    await take_turn(volunteer, lambda x: "heads")
    await take_turn(other, lambda x: "tails")
    events = await events_until(client, "cancel")
    error = next(e["data"] for e in events if e["event"] == "error")
    assert error["name"] == "NoQuorum" and error["slice"] == 1
    assert events[-1]["data"]["code"] == "ENOQUORUM"
    assert "did not agree" in events[-1]["data"]["reason"]

    job = await sync_to_async(Job.objects.get)(pk=job_id)
    assert job.status == JobStatus.CANCELLED and job.computed == 0
    assert await sync_to_async(balance_of)(deployer.account) == to_units(10)
    assert await sync_to_async(balance_of)(await address_of(volunteer)) == 0
    assert await sync_to_async(total_supply)() == await sync_to_async(sum_of_balances)()


async def test_a_cheque_must_cover_every_verifying_result(deployer):
    client = await connect_client(deployer)
    # 6 slices at 0.01 with a quorum of 3 cost 0.18: a cheque for 0.06 is refused.
    frame = deployer.deploy(input=SIX, verify={"quorum": 3}, max_total="0.06")
    await client.send_json_to(frame)
    refused = await receive_until(client, "error")
    assert refused["code"] == "EBADPAYMENT"
    assert "6 slices x 3 results each (verification) at 0.01 cost 0.18" in refused["message"]
    bad = deployer.deploy(input=SIX, verify={"quorum": 9})
    await client.send_json_to(bad)
    invalid = await receive_until(client, "error")
    assert invalid["code"] == "EINVALID" and "quorum" in invalid["message"]
    poor = deployer.deploy(input=SIX, verify={"quorum": 2}, offer="1", max_total="12")
    await client.send_json_to(poor)
    refused = await receive_until(client, "error")
    assert refused["code"] == "ENOFUNDS"
    assert "need 12 credits (2 verifying results a slice)" in refused["message"]
    assert await sync_to_async(balance_of)(deployer.account) == to_units(10)


async def test_a_trusted_worker_is_accepted_alone_under_adaptive_verification(
    deployer, volunteer, django_user_model
):
    newcomer = await sync_to_async(make_volunteer)(django_user_model, "newcomer@example.com")
    await sync_to_async(WorkerReputation.objects.create)(user=volunteer, streak=10)
    client = await connect_client(deployer)
    verify = {"quorum": 2, "adaptive": True, "spot_check": 1e-9}
    await client.send_json_to(deployer.deploy(input=SIX, verify=verify))
    job_id = (await receive_until(client, "accepted"))["job"]

    unknown, _ = await take_turn(newcomer, lambda x: x * 2)
    assert unknown is not None and unknown["earned"] == "0"  # not trusted: replicated
    trusted, _ = await take_turn(volunteer, lambda x: x * 2)
    assert trusted is not None and trusted["earned"] == "0.06"
    await receive_until(client, "complete")
    # The newcomer's results agreed with the trusted ones: both paid; nothing more was spent.
    assert await sync_to_async(balance_of)(await address_of(newcomer)) == to_units("0.06")
    assert await sync_to_async(balance_of)(deployer.account) == to_units("9.88")

    second = deployer.deploy(input=SIX, verify=verify)
    await client.send_json_to(second)
    second_id = (await receive_until(client, "accepted"))["job"]
    alone, _ = await take_turn(volunteer, lambda x: x * 3)
    assert alone is not None and alone["earned"] == "0.06"
    await receive_until(client, "complete")
    job = await sync_to_async(Job.objects.get)(pk=second_id)
    assert job.status == JobStatus.FINISHED and job_id != second_id
    # Accepted alone: one result paid per slice, the rest of the escrow refunded.
    assert await sync_to_async(balance_of)(deployer.account) == to_units("9.82")


async def test_a_suspended_worker_gets_work_again_when_the_suspension_ends(
    deployer, volunteer, settings
):
    settings.DISPATCH_POLL_SECONDS = 0.1
    await sync_to_async(WorkerReputation.objects.create)(
        user=volunteer, suspended_until=timezone.now() + timedelta(seconds=1)
    )
    client = await connect_client(deployer)
    await client.send_json_to(deployer.deploy(input=SIX, verify={"quorum": 2}))
    await receive_until(client, "accepted")
    worker = await connect_worker(volunteer, cores=6)
    await worker.send_json_to({"type": "ready", "id": "r", "capacity": 6})
    refused = await receive_until(worker, "error")
    assert refused["code"] == "ESUSPENDED" and refused["id"] == "r"
    task = await receive_until(worker, "task")  # once the second has passed, unasked
    assert len(task["slices"]) == 6
