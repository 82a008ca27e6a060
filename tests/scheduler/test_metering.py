"""Metering: the time a worker's results took in their sandboxes (`ms`) and the bytes of the
slices' data handed out and of the kept results add up to the job's `totalCPUTime`, `bytesIn`
and `bytesOut`, and to the totals of the worker's user. A time claim never counts for more
than its slice's lease has lasted, and a refused result counts nothing. Driven over the client
and worker sockets, on SQLite and (with DATABASE_URL) PostgreSQL."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from portal.scheduler.models import Job, WorkerTally
from tests.scheduler.conftest import Deployer, connect_client, connect_worker, receive_until
from tests.scheduler.test_gpu_time import deployed, leased_since, next_task, status_reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

VALUES = [{"x": 1}, "two", [3, 3, 3]]


def weight(value: Any) -> int:
    """A value's bytes as the scheduler meters them: its JSON (as json.dumps writes it), UTF-8."""
    return len(json.dumps(value, ensure_ascii=False).encode())


async def send_results(worker: Any, job_id: str, results: list[dict[str, Any]]) -> int:
    await worker.send_json_to({"type": "result", "id": 1, "job": job_id, "results": results})
    return int((await receive_until(worker, "ack"))["accepted"])


async def metered(job_id: str, user: Any) -> tuple[Job, WorkerTally]:
    job = await sync_to_async(Job.objects.get)(pk=job_id)
    tally = await sync_to_async(WorkerTally.objects.get)(user=user)
    return job, tally


async def test_time_and_bytes_of_kept_results_add_up_for_the_job_and_the_worker(
    deployer: Deployer, volunteer: Any
) -> None:
    client = await connect_client(deployer)
    job_id = await deployed(client, deployer, input={"kind": "values", "values": VALUES})
    worker = await connect_worker(volunteer, cores=2)
    task = await next_task(worker, capacity=2)
    held = [s["slice"] for s in task["slices"]]
    await leased_since(job_id, 60)
    results = [
        {"slice": held[0], "value": "a result", "ms": 1_500},
        {"slice": held[1], "value": [1, 2], "ms": 500, "gpu_ms": 100},
        {"slice": 3, "value": "never handed to it", "ms": 9_000},  # refused: counts nothing
    ]
    assert await send_results(worker, job_id, results) == 2

    job, tally = await metered(job_id, volunteer)
    handed = sum(weight(VALUES[n - 1]) for n in held)
    assert (job.cpu_ms, job.gpu_ms, job.bytes_in) == (2_000, 100, handed)
    assert job.bytes_out == weight("a result") + weight([1, 2])
    assert (tally.cpu_ms, tally.gpu_ms, tally.bytes_in, tally.bytes_out) == (
        2_000,
        100,
        handed,
        job.bytes_out,
    )
    status = await status_reply(client, job_id)
    assert (status["totalCPUTime"], status["bytesIn"], status["bytesOut"]) == (
        2.0,
        handed,
        job.bytes_out,
    )
    await client.disconnect()
    await worker.disconnect()


async def test_a_cpu_claim_longer_than_the_lease_is_clipped(
    deployer: Deployer, volunteer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = await connect_client(deployer)
    job_id = await deployed(client, deployer, input={"kind": "values", "values": [1]})
    worker = await connect_worker(volunteer, cores=1)
    task = await next_task(worker, capacity=1)
    await leased_since(job_id, 2)
    hour = 3_600_000
    result = {"slice": task["slices"][0]["slice"], "value": 7, "ms": hour}
    with caplog.at_level(logging.WARNING, logger="portal.scheduler.services"):
        assert await send_results(worker, job_id, [result]) == 1

    job, _ = await metered(job_id, volunteer)
    assert 2_000 <= job.cpu_ms < 60_000  # as long as the lease had lasted, not an hour
    assert any("claimed more CPU or GPU time" in r.getMessage() for r in caplog.records)
    await client.disconnect()
    await worker.disconnect()


async def test_a_batchs_claims_together_are_at_most_what_the_workers_cores_could_compute(
    deployer: Deployer, volunteer: Any
) -> None:
    """Three slices held for 60 s by a one-core worker: each claims 50 s (under its lease), but
    one core computes 60 s of them in 60 s, not 150."""
    client = await connect_client(deployer)
    job_id = await deployed(client, deployer, input={"kind": "values", "values": [1, 2, 3, 4]})
    worker = await connect_worker(volunteer, cores=1)
    first = await next_task(worker, capacity=1)  # one slice: nothing measured yet
    number = first["slices"][0]["slice"]
    assert await send_results(worker, job_id, [{"slice": number, "value": 0, "ms": 1}]) == 1
    task = await next_task(worker, capacity=3)  # 1 ms a slice: the rest of the job at once
    held = [s["slice"] for s in task["slices"]]
    assert len(held) == 3
    await leased_since(job_id, 60)
    results = [{"slice": n, "value": n, "ms": 50_000} for n in held]
    assert await send_results(worker, job_id, results) == 3
    job, _ = await metered(job_id, volunteer)
    assert 60_000 < job.cpu_ms < 61_000  # 1 ms, then 60 s of the 150 claimed
    await client.disconnect()
    await worker.disconnect()
