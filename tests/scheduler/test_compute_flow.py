"""A job deployed on the client socket is computed over the worker socket and paid for."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from dcp.protocol.credits import to_units
from portal.bank.selectors import balance_of, sum_of_balances, total_supply
from portal.scheduler.models import Job, JobStatus, Slice
from tests.scheduler.conftest import connect_client, connect_worker, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def compute(worker, fn=lambda x: x * 2) -> dict:
    """Answer one task with fn applied to each datum; returns the ack."""
    task = await receive_until(worker, "task")
    results = [{"slice": s["slice"], "value": fn(s["datum"]), "ms": 1.0} for s in task["slices"]]
    await worker.send_json_to(
        {"type": "result", "id": "r", "job": task["job"]["id"], "results": results}
    )
    return await receive_until(worker, "ack")


async def test_a_range_job_is_computed_paid_and_refunded(deployer, volunteer):
    client = await connect_client(deployer)
    await client.send_json_to(
        deployer.deploy(input={"kind": "range", "start": 1, "end": 10, "step": 1})
    )
    accepted = await receive_until(client, "accepted")
    assert accepted["total"] == 10
    job_id = accepted["job"]
    assert await sync_to_async(balance_of)(deployer.account) == to_units("9.9")

    worker = await connect_worker(volunteer, cores=4)
    payee = await sync_to_async(lambda: volunteer.keys.get(is_default=True).address)()
    computed = 0
    while computed < 10:
        await worker.send_json_to({"type": "ready", "capacity": 4})
        ack = await compute(worker)
        computed += ack["accepted"]
    await receive_until(client, "complete")

    await client.send_json_to({"type": "results", "id": 5, "job": job_id, "start": 1, "end": 100})
    results = await receive_until(client, "results")
    assert results["results"] == [[n, n * 2] for n in range(1, 11)]

    assert await sync_to_async(balance_of)(payee) == to_units("0.1")
    assert await sync_to_async(balance_of)(deployer.account) == to_units("9.9")
    assert await sync_to_async(balance_of)(f"escrow:{job_id}") == 0
    assert await sync_to_async(total_supply)() == await sync_to_async(sum_of_balances)()
    job = await sync_to_async(Job.objects.get)(pk=job_id)
    assert job.status == JobStatus.FINISHED and job.computed == 10
    await client.disconnect()
    await worker.disconnect()


async def test_unspent_escrow_is_refunded_to_the_payer(deployer, volunteer):
    client = await connect_client(deployer)
    await client.send_json_to(
        deployer.deploy(input={"kind": "values", "values": ["a", "b"]}, offer="0.5")
    )
    accepted = await receive_until(client, "accepted")
    assert await sync_to_async(balance_of)(deployer.account) == to_units(9)
    await client.send_json_to({"type": "cancel", "id": 2, "job": accepted["job"]})
    await receive_until(client, "cancelled")
    event = await receive_until(client, "cancel")
    assert event["data"]["code"] == "ECANCELLED"
    assert await sync_to_async(balance_of)(deployer.account) == to_units(10)
    await client.disconnect()


async def test_a_disconnected_worker_loses_its_slices_to_the_queue(deployer, volunteer):
    client = await connect_client(deployer)
    await client.send_json_to(
        deployer.deploy(input={"kind": "range", "start": 1, "end": 3, "step": 1})
    )
    job_id = (await receive_until(client, "accepted"))["job"]
    first = await connect_worker(volunteer, cores=3)
    await first.send_json_to({"type": "ready", "capacity": 3})
    task = await receive_until(first, "task")
    assert len(task["slices"]) == 3
    await first.disconnect()

    second = await connect_worker(volunteer, cores=3)
    await second.send_json_to({"type": "ready", "capacity": 3})
    ack = await compute(second, fn=lambda x: x + 100)
    assert ack["accepted"] == 3
    await receive_until(client, "complete")
    rows = await sync_to_async(
        lambda: list(
            Slice.objects.filter(job_id=job_id).values_list("number", "result", "attempts")
        )
    )()
    assert sorted(rows) == [(1, 101, 2), (2, 102, 2), (3, 103, 2)]
    await client.disconnect()
    await second.disconnect()


async def test_a_late_result_for_a_redispatched_slice_is_ignored_and_not_paid(
    deployer, volunteer, settings
):
    client = await connect_client(deployer)
    await client.send_json_to(
        deployer.deploy(input={"kind": "range", "start": 1, "end": 1, "step": 1})
    )
    job_id = (await receive_until(client, "accepted"))["job"]
    slow = await connect_worker(volunteer, cores=1)
    await slow.send_json_to({"type": "ready", "capacity": 1})
    task = await receive_until(slow, "task")
    # The lease lapses: the slice is handed to another worker, which answers first.
    await sync_to_async(
        lambda: Slice.objects.filter(job_id=job_id).update(lease_expires="2000-01-01T00:00:00Z")
    )()
    fast = await connect_worker(volunteer, cores=1)
    await fast.send_json_to({"type": "ready", "capacity": 1})
    assert (await compute(fast, fn=lambda x: "fast"))["accepted"] == 1
    await slow.send_json_to(
        {"type": "result", "id": "late", "job": job_id, "results": [{"slice": 1, "value": "slow"}]}
    )
    ack = await receive_until(slow, "ack")
    assert ack == {"type": "ack", "id": "late", "accepted": 0, "earned": "0"}
    payee = await sync_to_async(lambda: volunteer.keys.get(is_default=True).address)()
    assert await sync_to_async(balance_of)(payee) == to_units("0.01")
    result = await sync_to_async(lambda: Slice.objects.get(job_id=job_id).result)()
    assert result == "fast"
    assert task["slices"] == [{"slice": 1, "datum": 1}]
    for communicator in (client, slow, fast):
        await communicator.disconnect()


async def test_a_failed_slice_is_retried_on_another_worker_then_cancels_the_job(
    deployer, volunteer
):
    client = await connect_client(deployer)
    await client.send_json_to(
        deployer.deploy(input={"kind": "range", "start": 1, "end": 1, "step": 1})
    )
    job_id = (await receive_until(client, "accepted"))["job"]
    first = await connect_worker(volunteer, cores=1)
    second = await connect_worker(volunteer, cores=1)
    failure = {
        "slice": 1,
        "name": "ZeroDivisionError",
        "message": "division by zero",
        "traceback": "Traceback ...\nZeroDivisionError: division by zero",
    }
    await first.send_json_to({"type": "ready", "capacity": 1})
    await receive_until(first, "task")
    await first.send_json_to({"type": "result", "id": 1, "job": job_id, "errors": [failure]})
    await receive_until(first, "ack")
    error = await receive_until(client, "error")
    assert error["data"]["traceback"].endswith("division by zero")

    # The failing worker asks first, but the retry goes to the other one.
    await first.send_json_to({"type": "ready", "capacity": 1})
    assert (await receive_until(first, "waiting"))["type"] == "waiting"
    await second.send_json_to({"type": "ready", "capacity": 1})
    await receive_until(second, "task")
    await second.send_json_to({"type": "result", "id": 2, "job": job_id, "errors": [failure]})
    await receive_until(second, "ack")
    cancel = await receive_until(client, "cancel")
    assert cancel["data"]["code"] == "ETOOMANYERRORS"
    assert "division by zero" in cancel["data"]["reason"]
    assert await sync_to_async(balance_of)(deployer.account) == to_units(10)
    await receive_until(second, "abort")
    for communicator in (client, first, second):
        await communicator.disconnect()


async def test_print_in_a_work_function_reaches_the_client_as_console(deployer, volunteer):
    client = await connect_client(deployer)
    await client.send_json_to(
        deployer.deploy(input={"kind": "range", "start": 1, "end": 1, "step": 1})
    )
    job_id = (await receive_until(client, "accepted"))["job"]
    worker = await connect_worker(volunteer, cores=1)
    await worker.send_json_to(
        {"type": "console", "job": job_id, "slice": 1, "level": "log", "message": "not mine yet"}
    )
    await worker.send_json_to({"type": "ready", "capacity": 1})
    await receive_until(worker, "task")
    await worker.send_json_to(
        {"type": "console", "job": job_id, "slice": 1, "level": "log", "message": "hello from 1"}
    )
    console = await receive_until(client, "console")
    assert console["data"] == {"slice": 1, "level": "log", "message": "hello from 1"}
    await client.disconnect()
    await worker.disconnect()


async def test_the_schedulers_commission_goes_to_the_fees_account(deployer, volunteer, settings):
    settings.SCHEDULER_COMMISSION_PERCENT = "12.5"
    client = await connect_client(deployer)
    await client.send_json_to(
        deployer.deploy(input={"kind": "range", "start": 1, "end": 4, "step": 1})
    )
    await receive_until(client, "accepted")
    fees_before = await sync_to_async(balance_of)("system:fees")
    worker = await connect_worker(volunteer, cores=4)
    payee = await sync_to_async(lambda: volunteer.keys.get(is_default=True).address)()
    await worker.send_json_to({"type": "ready", "capacity": 4})
    ack = await compute(worker)
    assert ack["accepted"] == 4

    # Four results at the deploy's 0.01 credits: 12.5 % of each to the fees, the rest earned.
    assert ack["earned"] == "0.035"
    assert await sync_to_async(balance_of)(payee) == to_units("0.035")
    assert await sync_to_async(balance_of)("system:fees") - fees_before == to_units("0.005")
    assert await sync_to_async(total_supply)() == await sync_to_async(sum_of_balances)()
    await client.disconnect()
    await worker.disconnect()
