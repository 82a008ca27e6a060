"""A job whose work function uses the GPU, deployed as the client builds it, reaches WebGPU
workers only, over the real sockets."""

from __future__ import annotations

from decimal import Decimal

import pytest

import dcp
from tests.scheduler.conftest import connect_client, connect_worker, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

GPU_WORK = "from dcp import gpu\n\ndef work(n):\n    return gpu.buffer([float(n)]).read()\n"


def hello(request_id: int, webgpu: bool) -> dict:
    return {"type": "hello", "id": request_id, "cores": 2, "capabilities": {"webgpu": webgpu}}


async def deploy_gpu_job(deployer) -> tuple[object, str]:
    """A client socket and the id of a two-slice job deployed with the client's own frame."""
    frame = dcp.compute_for([1, 2], GPU_WORK).deploy_frame(Decimal("0.01"), deployer.account_key)
    assert frame["requirements"] == {"environment": {"webgpu": True}}
    client = await connect_client(deployer)
    await client.send_json_to({**frame, "id": "deploy"})
    accepted = await receive_until(client, "accepted")
    return client, accepted["job"]


async def test_a_gpu_job_is_never_given_to_a_worker_without_webgpu(deployer, volunteer):
    client, job_id = await deploy_gpu_job(deployer)
    plain = await connect_worker(volunteer, cores=2)  # its hello says nothing of webgpu
    await plain.send_json_to({"type": "ready", "capacity": 2})
    assert (await plain.receive_json_from())["type"] == "waiting"

    gpu = await connect_worker(volunteer, cores=2)
    await gpu.send_json_to(hello(2, webgpu=True))
    await receive_until(gpu, "welcome")
    await gpu.send_json_to({"type": "ready", "capacity": 2})

    task = await receive_until(gpu, "task")
    assert task["job"]["id"] == job_id
    assert [s["slice"] for s in task["slices"]] == [1, 2]
    assert await plain.receive_nothing(timeout=0.2)
    for communicator in (client, plain, gpu):
        await communicator.disconnect()


async def test_a_worker_that_says_hello_again_with_webgpu_gets_the_gpu_job_on_its_socket(
    deployer, volunteer
):
    """What the Worker tab does when its "Use GPU" switch is turned on while it runs."""
    client, job_id = await deploy_gpu_job(deployer)
    worker = await connect_worker(volunteer, cores=2)
    await worker.send_json_to(
        {"type": "hello", "id": 2, "cores": 2, "capabilities": {"webgpu": False}}
    )
    first = await receive_until(worker, "welcome")
    await worker.send_json_to({"type": "ready", "capacity": 2})
    assert (await worker.receive_json_from())["type"] == "waiting"

    await worker.send_json_to(
        {"type": "hello", "id": 3, "cores": 2, "capabilities": {"webgpu": True}}
    )
    again = await receive_until(worker, "welcome")
    await worker.send_json_to({"type": "ready", "capacity": 2})

    task = await receive_until(worker, "task")
    assert again["worker"] == first["worker"]  # the same worker, the same connection
    assert task["job"]["id"] == job_id
    for communicator in (client, worker):
        await communicator.disconnect()
