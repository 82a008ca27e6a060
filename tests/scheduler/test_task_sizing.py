"""Task sizes follow each job's measured slice time on each worker connection: a worker that
just computed a job of 1 ms slices starts the next job one slice per core, not with a task
sized for 1 ms slices (which would hand a job of slow slices to it alone). Driven over the
client and worker sockets."""

from __future__ import annotations

from typing import Any

import pytest

from tests.scheduler.conftest import Deployer, connect_client, connect_worker, receive_until
from tests.scheduler.test_gpu_time import deployed, next_task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def answer(worker: Any, job_id: str, task: dict[str, Any], ms: float) -> None:
    results = [{"slice": s["slice"], "value": 0, "ms": ms} for s in task["slices"]]
    await worker.send_json_to({"type": "result", "id": 1, "job": job_id, "results": results})
    await receive_until(worker, "ack")


async def test_a_new_job_starts_one_slice_per_core_whatever_the_last_job_measured(
    deployer: Deployer, volunteer: Any
) -> None:
    client = await connect_client(deployer)
    fast = await deployed(client, deployer, input={"kind": "values", "values": list(range(50))})
    worker = await connect_worker(volunteer, cores=2)
    first = await next_task(worker, capacity=100)
    assert len(first["slices"]) == 2  # nothing measured yet: one slice per core
    await answer(worker, fast, first, ms=1)
    measured = await next_task(worker, capacity=100)
    assert len(measured["slices"]) == 48  # about a second of 1 ms slices: the rest of the job
    await answer(worker, fast, measured, ms=1)

    slow = await deployed(client, deployer, input={"kind": "values", "values": list(range(50))})
    task = await next_task(worker, capacity=100)
    assert task["job"]["id"] == slow and len(task["slices"]) == 2
    await answer(worker, slow, task, ms=400)
    task = await next_task(worker, capacity=100)
    assert len(task["slices"]) == 5  # 2 cores x 1000 ms / 400 ms a slice
    await client.disconnect()
    await worker.disconnect()


async def test_asking_again_and_again_holds_two_tasks_of_the_job_at_hand_not_of_a_faster_one(
    deployer: Deployer, volunteer: Any
) -> None:
    client = await connect_client(deployer)
    fast = await deployed(client, deployer, input={"kind": "values", "values": list(range(50))})
    worker = await connect_worker(volunteer, cores=2)
    for _ in range(2):  # 1 ms slices measured: tasks of up to 2,000 slices of that job
        await answer(worker, fast, await next_task(worker, capacity=100), ms=1)
    slow = await deployed(client, deployer, input={"kind": "values", "values": list(range(50))})
    held = [len((await next_task(worker, capacity=100))["slices"]) for _ in range(2)]
    assert held == [2, 2]  # one slice per core, twice: nothing measured of this job yet
    await worker.send_json_to({"type": "ready", "capacity": 100})
    assert (await receive_until(worker, "waiting"))["type"] == "waiting"
    assert slow
    await client.disconnect()
    await worker.disconnect()
