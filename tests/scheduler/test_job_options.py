"""Open jobs, requirements, progress timeouts and the other input kinds, over the sockets."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from eth_account import Account
from eth_account.messages import encode_defunct

from dcp.protocol.credits import to_units
from portal.bank.selectors import balance_of
from tests.scheduler.conftest import connect_client, connect_worker, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def add_slices(deployer, job_id: str, ref: str, values: list, max_total: str = "100") -> dict:
    text = f"DCP Portal payment\njob: {job_id}\nbatch: {ref}\nmax total: {max_total}"
    signature = Account.sign_message(encode_defunct(text=text), deployer.account_key).signature
    return {
        "type": "add_slices",
        "id": ref,
        "job": job_id,
        "ref": ref,
        "values": values,
        "payment": {"max_total": max_total, "signature": "0x" + signature.hex()},
    }


async def finish_all(worker, fn, count: int) -> int:
    """Answer tasks in the order they come (wake-ups may split them) until `count` are paid."""
    accepted = 0
    await worker.send_json_to({"type": "ready", "capacity": 100})
    while accepted < count:
        frame = await worker.receive_json_from(timeout=5)
        if frame["type"] == "task":
            results = [{"slice": s["slice"], "value": fn(s["datum"])} for s in frame["slices"]]
            await worker.send_json_to(
                {"type": "result", "id": 1, "job": frame["job"]["id"], "results": results}
            )
        elif frame["type"] == "ack":
            accepted += frame["accepted"]
    return accepted


async def test_an_open_job_fed_in_three_batches_completes_after_close(deployer, volunteer):
    client = await connect_client(deployer)
    frame = deployer.deploy(input={"kind": "values", "values": [1, 2]}, offer="0.01")
    frame["open"] = True
    # The cheque covers what the deploy frame carries; re-sign with the open flag out of the hash.
    await client.send_json_to(frame)
    job_id = (await receive_until(client, "accepted"))["job"]
    worker = await connect_worker(volunteer, cores=4)
    assert await finish_all(worker, lambda x: x * 10, 2) == 2
    status = await receive_until(client, "status")
    assert status["data"]["open"] is True  # two of two computed, but still open

    await client.send_json_to(add_slices(deployer, job_id, "batch-0002", [3, 4]))
    assert (await receive_until(client, "added"))["total"] == 4
    await client.send_json_to(add_slices(deployer, job_id, "batch-0002", [3, 4]))
    assert (await receive_until(client, "added"))["total"] == 4  # a resent batch adds nothing
    await client.send_json_to(add_slices(deployer, job_id, "batch-0003", [5]))
    assert (await receive_until(client, "added"))["total"] == 5
    assert await finish_all(worker, lambda x: x * 10, 3) == 3
    await client.send_json_to({"type": "close", "id": 9, "job": job_id})
    assert (await receive_until(client, "closed"))["total"] == 5
    await receive_until(client, "complete")
    await client.send_json_to({"type": "results", "id": 10, "job": job_id, "start": 1, "end": 9})
    assert (await receive_until(client, "results"))["results"] == [[n, n * 10] for n in range(1, 6)]
    assert await sync_to_async(balance_of)(deployer.account) == to_units("9.95")

    await client.send_json_to(add_slices(deployer, job_id, "batch-0004", [6]))
    assert (await receive_until(client, "error"))["code"] == "ECLOSED"
    await client.disconnect()
    await worker.disconnect()


async def test_a_batch_cheque_that_does_not_cover_the_batch_is_refused(deployer):
    client = await connect_client(deployer)
    frame = deployer.deploy(input={"kind": "values", "values": []}, offer="0.5")
    frame["open"] = True
    await client.send_json_to(frame)
    job_id = (await receive_until(client, "accepted"))["job"]
    await client.send_json_to(add_slices(deployer, job_id, "batch-0001", [1, 2, 3], "1"))
    assert (await receive_until(client, "error"))["code"] == "EBADPAYMENT"
    await client.disconnect()


async def test_unknown_requirements_are_an_error_not_dropped(deployer):
    client = await connect_client(deployer)
    frame = deployer.deploy(input={"kind": "range", "start": 1, "end": 2})
    frame["requirements"] = {"environment": {"teleporter": True}}
    await client.send_json_to(frame)
    error = await receive_until(client, "error")
    assert error["code"] == "EINVALID" and "teleporter" in error["message"]
    await client.disconnect()


@pytest.mark.parametrize("offer", ["1_0", "99999999999.999999999", "0x10"])
async def test_an_offer_that_is_not_a_plain_amount_is_refused(deployer, offer):
    client = await connect_client(deployer)
    await client.send_json_to(deployer.deploy(input={"kind": "values", "values": [1]}, offer=offer))
    error = await receive_until(client, "error")
    assert error["code"] == "EINVALID" and "slice_payment_offer" in error["message"]
    await client.disconnect()


async def test_a_webgpu_job_waits_for_a_webgpu_worker_and_says_why(deployer, volunteer):
    client = await connect_client(deployer)
    frame = deployer.deploy(input={"kind": "range", "start": 1, "end": 2})
    frame["requirements"] = {"environment": {"webgpu": True}}
    await client.send_json_to(frame)
    await receive_until(client, "accepted")
    status = await receive_until(client, "status")
    assert status["data"]["waiting"] == "no connected worker has webgpu"

    plain = await connect_worker(volunteer, cores=2)
    await plain.send_json_to({"type": "ready", "capacity": 2})
    assert (await plain.receive_json_from())["type"] == "waiting"

    gpu = await connect_worker(volunteer, cores=2)
    await gpu.send_json_to({"type": "hello", "id": 2, "cores": 2, "capabilities": {"webgpu": True}})
    await receive_until(gpu, "welcome")
    await gpu.send_json_to({"type": "ready", "capacity": 2})
    task = await receive_until(gpu, "task")
    assert [s["slice"] for s in task["slices"]] == [1, 2]
    for communicator in (client, plain, gpu):
        await communicator.disconnect()


async def test_a_slice_stopped_twice_for_no_progress_cancels_the_job(deployer, volunteer, settings):
    settings.RETRY_ELSEWHERE_SECONDS = 0
    client = await connect_client(deployer)
    frame = deployer.deploy(input={"kind": "range", "start": 1, "end": 1})
    frame["progress_timeout"] = 5
    await client.send_json_to(frame)
    job_id = (await receive_until(client, "accepted"))["job"]
    worker = await connect_worker(volunteer, cores=1)
    for attempt in range(2):
        await worker.send_json_to({"type": "ready", "capacity": 1})
        task = await receive_until(worker, "task", timeout=10)
        assert task["progress_timeout"] == 5
        stalled = {"slice": 1, "name": "NoProgress", "message": "no progress for 5 s"}
        await worker.send_json_to(
            {"type": "result", "id": attempt, "job": job_id, "errors": [stalled]}
        )
        event = await receive_until(client, "noprogress")
        assert event["data"] == {"slice": 1, "seconds": 5}
    cancel = await receive_until(client, "cancel")
    assert cancel["data"]["code"] == "ENOPROGRESS"
    await client.disconnect()
    await worker.disconnect()


async def test_grouped_ranges_and_products_reach_the_worker_expanded(deployer, volunteer):
    client = await connect_client(deployer)
    await client.send_json_to(
        deployer.deploy(input={"kind": "range", "start": 1, "end": 5, "step": 1, "group": 2})
    )
    assert (await receive_until(client, "accepted"))["total"] == 3
    await client.send_json_to(
        deployer.deploy(
            input={"kind": "product", "ranges": [{"start": 1, "end": 2}, {"start": 0, "end": 1}]}
        )
    )
    assert (await receive_until(client, "accepted"))["total"] == 4
    worker = await connect_worker(volunteer, cores=8)
    data = []
    for _ in range(2):
        await worker.send_json_to({"type": "ready", "capacity": 8})
        task = await receive_until(worker, "task")
        data.append([s["datum"] for s in task["slices"]])
    assert data == [[[1, 2], [3, 4], [5]], [[1, 0], [1, 1], [2, 0], [2, 1]]]
    await client.send_json_to({"type": "jobs", "id": "list"})
    listing = await receive_until(client, "jobs")
    assert [job["total"] for job in listing["jobs"]] == [4, 3]
    assert json.dumps(listing)  # plain JSON all the way
    await client.disconnect()
    await worker.disconnect()
