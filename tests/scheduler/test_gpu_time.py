"""GPU time per slice: a worker's `gpu_ms` claims add up to its job's `totalGPUTime` (seconds)
in the socket's status, the REST status and the Jobs tab. A claim counts only for a result
the scheduler keeps, and never for more than the slice's lease has lasted. Driven over the
client and worker sockets with the synthetic worker, on SQLite and (with DATABASE_URL)
PostgreSQL."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone
from pydantic import ValidationError

from dcp.protocol import messages as wire
from portal.api.services import create_api_key
from portal.scheduler.models import Job, Slice, SliceStatus
from portal.wallet.models import Key, KeyKind
from testkit.synthetic_worker import SyntheticWorker
from tests.scheduler.conftest import (
    Deployer,
    connect_client,
    connect_worker,
    make_volunteer,
    receive_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

FOUR = {"kind": "range", "start": 1, "end": 4, "step": 1}


async def deployed(client: Any, deployer: Deployer, **options: Any) -> str:
    await client.send_json_to(deployer.deploy(**options))
    return (await receive_until(client, "accepted"))["job"]


async def leased_since(job_id: str, seconds: float) -> None:
    """The job's leases began `seconds` ago: what a slice of that long may claim of the GPU."""
    began = timezone.now() - timedelta(seconds=seconds)
    await sync_to_async(
        lambda: Slice.objects.filter(job_id=job_id, status=SliceStatus.LEASED).update(
            leased_at=began
        )
    )()


async def next_task(worker: Any, capacity: int = 4) -> dict[str, Any]:
    await worker.send_json_to({"type": "ready", "capacity": capacity})
    return await receive_until(worker, "task")


async def answer(worker: Any, task: dict[str, Any], gpu_ms: float | None) -> dict[str, Any]:
    """The synthetic worker's results of `task`, each claiming `gpu_ms`; returns the ack."""
    frame = SyntheticWorker("", "", gpu_ms=gpu_ms).compute(task)
    await worker.send_to(text_data=frame.model_dump_json(serialize_as_any=True))
    return await receive_until(worker, "ack")


async def status_reply(client: Any, job_id: str) -> dict[str, Any]:
    """The `status` reply (not a `status` event) for the job."""
    await client.send_json_to({"type": "status", "id": "s", "job": job_id})
    while (frame := await client.receive_json_from(timeout=5))["type"] != "status":
        pass
    return frame["status"]


async def gpu_ms_of(job_id: str) -> float:
    return (await sync_to_async(Job.objects.get)(pk=job_id)).gpu_ms


async def test_the_gpu_time_of_the_results_adds_up_to_the_jobs_total_gpu_time(deployer, volunteer):
    client = await connect_client(deployer)
    job_id = await deployed(client, deployer, input=FOUR)
    worker = await connect_worker(volunteer, cores=4)
    computed = 0
    while computed < 4:
        task = await next_task(worker)
        await leased_since(job_id, 60)
        computed += (await answer(worker, task, gpu_ms=250))["accepted"]

    statuses = []
    while (frame := await client.receive_json_from(timeout=5))["event"] != "complete":
        if frame["event"] == "status":
            statuses.append(frame["data"])
    assert statuses[0]["totalGPUTime"] == 0  # deployed: no GPU time yet
    assert statuses[-1]["totalGPUTime"] == 1.0  # four results of 250 ms
    assert (await status_reply(client, job_id))["totalGPUTime"] == 1.0
    await client.disconnect()
    await worker.disconnect()


async def test_a_claim_longer_than_the_lease_has_lasted_is_clipped_and_its_result_kept(
    deployer, volunteer, caplog
):
    client = await connect_client(deployer)
    job_id = await deployed(client, deployer, input={"kind": "values", "values": [1, 2]})
    worker = await connect_worker(volunteer, cores=2)
    task = await next_task(worker, capacity=2)
    assert len(task["slices"]) == 2
    await leased_since(job_id, 2)
    hour = 3_600_000.0
    with caplog.at_level(logging.WARNING, logger="portal.scheduler.services"):
        assert (await answer(worker, task, gpu_ms=hour))["accepted"] == 2

    # Each slice counts as long as its lease had lasted: two seconds and a little, not an hour.
    gpu_ms = await gpu_ms_of(job_id)
    assert 2 * 2_000 <= gpu_ms < 2 * hour
    clipped = [r for r in caplog.records if "claimed more CPU or GPU time" in r.getMessage()]
    assert len(clipped) == 1, "once a batch, however many claims it clipped"
    assert "2 slices" in clipped[0].getMessage()
    await client.disconnect()
    await worker.disconnect()


async def test_refused_and_repeated_results_add_no_gpu_time(deployer, volunteer):
    client = await connect_client(deployer)
    job_id = await deployed(client, deployer, input={"kind": "values", "values": [1, 2, 3]})
    worker = await connect_worker(volunteer, cores=2)
    task = await next_task(worker, capacity=2)
    held = [s["slice"] for s in task["slices"]]
    assert len(held) == 2
    await leased_since(job_id, 60)
    results = [
        {"slice": held[0], "value": 1, "gpu_ms": 100},
        {"slice": held[0], "value": 1, "gpu_ms": 9_000},  # a repeat: refused
        {"slice": held[1], "value": 2, "gpu_ms": 200},
        {"slice": 3, "value": 3, "gpu_ms": 9_000},  # never handed to this worker
    ]
    await worker.send_json_to({"type": "result", "id": 1, "job": job_id, "results": results})
    assert (await receive_until(worker, "ack"))["accepted"] == 2
    assert await gpu_ms_of(job_id) == 300

    # The same results again: no longer leased to it, refused, and they add nothing.
    await worker.send_json_to({"type": "result", "id": 2, "job": job_id, "results": results})
    assert (await receive_until(worker, "ack"))["accepted"] == 0
    assert await gpu_ms_of(job_id) == 300
    assert (await status_reply(client, job_id))["totalGPUTime"] == 0.3
    await client.disconnect()
    await worker.disconnect()


async def test_every_kept_result_of_a_verified_job_counts_its_gpu_time(
    deployer, volunteer, django_user_model
):
    other = await sync_to_async(make_volunteer)(django_user_model, "third@example.com")
    client = await connect_client(deployer)
    job_id = await deployed(
        client, deployer, input={"kind": "values", "values": [1, 2]}, verify={"quorum": 2}
    )
    for user, value in ((volunteer, 1), (other, 2)):  # they disagree: the job needs a third
        worker = await connect_worker(user, cores=2)
        task = await next_task(worker, capacity=2)
        await leased_since(job_id, 60)
        frame = SyntheticWorker("", "", gpu_ms=500).compute(task)
        results = [{**result, "value": value} for result in frame.results]
        await worker.send_json_to({"type": "result", "id": 1, "job": job_id, "results": results})
        assert (await receive_until(worker, "ack"))["accepted"] == 2
        await worker.disconnect()
    assert await gpu_ms_of(job_id) == 4 * 500
    await client.disconnect()


async def test_the_rest_status_and_job_carry_total_gpu_time(first_dev, deployer, volunteer):
    client = await connect_client(deployer)
    job_id = await deployed(client, deployer, input=FOUR)
    worker = await connect_worker(volunteer, cores=4)
    task = await next_task(worker)
    await leased_since(job_id, 60)
    await answer(worker, task, gpu_ms=1_234.5)
    await client.disconnect()
    await worker.disconnect()

    @sync_to_async
    def rest(path: str) -> dict[str, Any]:
        identity = Key.objects.get(user=first_dev, kind=KeyKind.IDENTITY)
        _, token = create_api_key(
            user=first_dev,
            label="ci",
            identity_address=identity.address,
            account_address=deployer.account,
        )
        response = Client().get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.content
        return response.json()

    expected = round(len(task["slices"]) * 1.2345, 3)
    assert (await rest(f"/api/v0/job/{job_id}/status"))["totalGPUTime"] == expected
    assert (await rest(f"/api/v0/job/{job_id}"))["totalGPUTime"] == expected


async def test_the_jobs_tab_shows_gpu_time_only_once_there_is_some(first_dev, deployer, volunteer):
    client = await connect_client(deployer)
    job_id = await deployed(client, deployer, input=FOUR)
    worker = await connect_worker(volunteer, cores=4)

    @sync_to_async
    def jobs_tab() -> tuple[str, dict[str, Any]]:
        browser = Client()
        browser.force_login(first_dev)
        page = browser.get("/portal/jobs/").content.decode()
        status = browser.get("/portal/jobs/status.json", {"job": job_id}).json()["jobs"][0]
        return page, status

    page, status = await jobs_tab()
    assert 'data-testid="job-gpu-time" hidden' in page and "gpu_time" not in status

    task = await next_task(worker)
    await leased_since(job_id, 60)
    await answer(worker, task, gpu_ms=1_500 / len(task["slices"]))
    page, status = await jobs_tab()
    assert "GPU time <span data-gpu-time>1.50 s</span>" in page
    assert 'data-testid="job-gpu-time" hidden' not in page
    assert status["gpu_time"] == "1.50 s"
    await client.disconnect()
    await worker.disconnect()


async def test_a_negative_or_endless_gpu_time_is_refused_by_the_protocol(deployer, volunteer):
    for bad in (-1, float("inf"), "fast"):
        frame = {"type": "result", "job": "j", "results": [{"slice": 1, "gpu_ms": bad}]}
        with pytest.raises(ValidationError) as caught:
            wire.worker_requests.validate_python(frame)
        assert wire.describe(caught.value).startswith("result.results.0.gpu_ms:")

    client = await connect_client(deployer)
    job_id = await deployed(client, deployer, input=FOUR)
    worker = await connect_worker(volunteer, cores=1)
    task = await next_task(worker, capacity=1)
    number = task["slices"][0]["slice"]
    results = [{"slice": number, "value": 2, "gpu_ms": -5}]
    await worker.send_json_to({"type": "result", "id": 1, "job": job_id, "results": results})
    error = await receive_until(worker, "error")
    assert error["code"] == "EINVALID" and "gpu_ms" in error["message"]
    assert await gpu_ms_of(job_id) == 0
    await client.disconnect()
    await worker.disconnect()
