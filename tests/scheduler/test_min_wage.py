"""A worker's minimum wage (its hello's `min_wage`, credits per CPU-second): a job whose pay,
its offer over the metered sandbox time of its kept results, comes to less is not handed to it;
a job not measured yet is (its first results measure it), unless it pays nothing. Driven over
the client and worker sockets."""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from portal.scheduler.consumers import WorkerConsumer
from tests.scheduler.conftest import Deployer, connect_client, connect_worker, receive_until
from tests.scheduler.test_gpu_time import deployed, leased_since, next_task
from tests.scheduler.test_metering import send_results

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def worker_with_min_wage(user: Any, wage: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(WorkerConsumer.as_asgi(), "/ws/worker/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "hello", "id": 1, "cores": 1, "min_wage": wage})
    assert (await communicator.receive_json_from())["type"] == "welcome"
    return communicator


async def offered_a_task(worker: WebsocketCommunicator) -> bool:
    """Whether the worker's `ready` is answered with a task (else it is told `waiting`)."""
    await worker.send_json_to({"type": "ready", "id": 2, "capacity": 1})
    while (frame := await worker.receive_json_from(timeout=5))["type"] not in {"task", "waiting"}:
        pass
    return bool(frame["type"] == "task")


async def test_a_job_that_pays_too_little_per_cpu_second_is_not_handed_out(
    deployer: Deployer, volunteer: Any, django_user_model: Any
) -> None:
    client = await connect_client(deployer)
    # 0.01 credits a slice; the first slice is measured at 2 s: 0.005 credits per CPU-second.
    job_id = await deployed(client, deployer, input={"kind": "values", "values": [1, 2, 3]})
    measuring = await connect_worker(volunteer, cores=1)
    task = await next_task(measuring, capacity=1)
    await leased_since(job_id, 60)
    first = task["slices"][0]["slice"]
    assert await send_results(measuring, job_id, [{"slice": first, "value": 1, "ms": 2_000}]) == 1
    await measuring.disconnect()

    choosy = await worker_with_min_wage(volunteer, "0.006")
    assert not await offered_a_task(choosy)
    await choosy.disconnect()
    content = await worker_with_min_wage(volunteer, "0.005")
    assert await offered_a_task(content)
    await content.disconnect()
    await client.disconnect()


async def test_a_job_not_measured_yet_is_handed_out_unless_it_pays_nothing(
    deployer: Deployer, volunteer: Any
) -> None:
    client = await connect_client(deployer)
    await deployed(client, deployer, input={"kind": "values", "values": [1]}, offer="0")
    choosy = await worker_with_min_wage(volunteer, "0.000000001")
    assert not await offered_a_task(choosy)
    await deployed(client, deployer, input={"kind": "values", "values": [1]})
    assert (await receive_until(choosy, "task"))["slices"]  # the waiting worker hears of it
    await choosy.disconnect()
    await client.disconnect()


async def test_a_malformed_minimum_wage_refuses_the_hello(volunteer: Any) -> None:
    communicator = WebsocketCommunicator(WorkerConsumer.as_asgi(), "/ws/worker/")
    communicator.scope["user"] = volunteer
    assert (await communicator.connect())[0]
    for wage in ("-1", "a lot", "0.0000000001"):
        await communicator.send_json_to({"type": "hello", "id": 1, "min_wage": wage})
        refusal = await communicator.receive_json_from()
        assert refusal["type"] == "error" and refusal["code"] == "EINVALID", refusal
        assert "min_wage" in refusal["message"]
    await communicator.disconnect()
