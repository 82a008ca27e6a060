"""What a client attaching to a job it deployed earlier learns: the job's identity and inputs."""

from __future__ import annotations

import pytest

from tests.scheduler.conftest import Deployer, connect_client, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def reply(client, kind: str) -> dict:
    """The next frame of type `kind`, skipping events (a `status` event is not the reply)."""
    while (frame := await client.receive_json_from(timeout=5))["type"] != kind:
        pass
    return frame


async def deployed(client, deployer: Deployer, **options) -> str:
    await client.send_json_to(deployer.deploy(**options))
    return (await receive_until(client, "accepted"))["job"]


async def test_status_carries_the_jobs_work_args_range_and_offer(deployer):
    client = await connect_client(deployer)
    job_id = await deployed(
        client,
        deployer,
        input={"kind": "range", "start": 0, "end": 1, "step": 0.25},
        source="def work(x, k):\n    return x * k\n",
        args=[3],
        offer="0.000001",
    )
    await client.send_json_to({"type": "status", "id": 7, "job": job_id})
    status = await reply(client, "status")
    assert status["id"] == 7 and status["status"]["total"] == 5
    assert status["info"] == {
        "work": {"language": "python", "source": "def work(x, k):\n    return x * k\n"},
        "args": [3],
        "input": {"kind": "range", "start": 0, "end": 1, "step": 0.25, "group": None},
        "slice_payment_offer": "0.000001",
        "open": False,
    }
    await client.disconnect()


async def test_subscribed_gives_a_values_job_its_kind_only(deployer):
    first = await connect_client(deployer)
    job_id = await deployed(first, deployer, input={"kind": "values", "values": ["a", "b"]})
    await first.disconnect()
    later = await connect_client(deployer)
    await later.send_json_to({"type": "subscribe", "id": "s", "job": job_id})
    subscribed = await reply(later, "subscribed")
    assert subscribed["info"]["input"] == {"kind": "values"}
    assert subscribed["info"]["slice_payment_offer"] == "0.01"
    assert subscribed["status"]["total"] == 2
    await later.disconnect()


async def test_inputs_returns_the_values_of_a_slice_span(deployer):
    client = await connect_client(deployer)
    values = [{"n": n} for n in range(1, 8)] + [None]
    job_id = await deployed(client, deployer, input={"kind": "values", "values": values})
    await client.send_json_to({"type": "inputs", "id": 3, "job": job_id, "start": 6, "end": 50})
    assert await reply(client, "inputs") == {
        "type": "inputs",
        "id": 3,
        "job": job_id,
        "start": 6,
        "values": [{"n": 6}, {"n": 7}, None],
    }
    await client.disconnect()


async def test_inputs_are_at_most_a_fetch_per_request(deployer, settings):
    settings.MAX_RESULTS_PER_FETCH = 2
    client = await connect_client(deployer)
    job_id = await deployed(client, deployer, input={"kind": "values", "values": [1, 2, 3, 4]})
    await client.send_json_to({"type": "inputs", "id": 1, "job": job_id, "start": 2, "end": 4})
    assert (await receive_until(client, "inputs"))["values"] == [2, 3]
    await client.disconnect()


async def test_inputs_of_a_range_job_are_computed_as_workers_receive_them(deployer):
    client = await connect_client(deployer)
    job_id = await deployed(
        client, deployer, input={"kind": "range", "start": 0, "end": 1, "step": 0.1}
    )
    await client.send_json_to({"type": "inputs", "id": 1, "job": job_id, "start": 3, "end": 4})
    assert (await receive_until(client, "inputs"))["values"] == [0.2, 0.3]
    await client.disconnect()


async def test_inputs_of_another_identitys_job_are_refused(deployer):
    client = await connect_client(deployer)
    await client.send_json_to({"type": "inputs", "id": 1, "job": "f" * 32, "start": 1, "end": 2})
    error = await receive_until(client, "error")
    assert error["code"] == "ENOJOB" and error["id"] == 1
    await client.send_json_to({"type": "inputs", "id": 2, "job": "x", "start": 0, "end": 2})
    assert (await receive_until(client, "error"))["code"] == "EINVALID"
    await client.disconnect()


async def test_the_deploying_client_hears_accepted_before_any_event_of_its_job(deployer):
    client = await connect_client(deployer)
    await client.send_json_to(deployer.deploy(input={"kind": "range", "start": 1, "end": 3}))
    first = await client.receive_json_from()
    second = await client.receive_json_from()
    assert first["type"] == "accepted"
    assert second["type"] == "event" and second["event"] == "status"
    assert second["data"]["total"] == 3
    await client.disconnect()
