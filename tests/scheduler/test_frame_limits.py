"""Nothing the scheduler sends is larger than the frame limit both ends keep: results and
inputs come back in pages, a task carries only the slices that fit; a value that cannot travel
with its work function is refused at deploy. A slice whose workers keep vanishing while they
hold it is failed, not handed out forever. Over the client and worker sockets, on SQLite and
(with DATABASE_URL) PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from dcp.protocol.credits import to_units
from portal.bank.selectors import balance_of, sum_of_balances, total_supply
from portal.scheduler import services
from portal.scheduler.models import Job, JobStatus, Slice, SliceInput
from portal.wallet.models import Key
from tests.scheduler.conftest import (
    connect_client,
    connect_worker,
    make_volunteer,
    receive_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

FRAME = 64 * 1024  # the frame limit these tests run under (the real one is 4 MiB)
ECHO = "def work(x):\n    return x\n"


@pytest.fixture(autouse=True)
def small_frames(settings: Any) -> None:
    settings.MAX_FRAME_BYTES = FRAME


def blob(n: int, size: int) -> str:
    """A value whose JSON is about `size` bytes, different for each n."""
    return f"{n:04d}" + "x" * (size - 6)


async def deploy(client: Any, deployer: Any, values: list[Any], **options: Any) -> str:
    frame = deployer.deploy(input={"kind": "values", "values": values}, **options)
    await client.send_json_to(frame)
    return (await receive_until(client, "accepted"))["job"]


def deploy_directly(deployer: Any, values: list[Any]) -> str:
    """A job of values too large together for one deploy frame (a client sends such values
    in batches: here the scheduler's own service stores them at once)."""
    payer = Key.objects.get(address=deployer.account)
    spec = services.JobSpec(
        ref=uuid.uuid4().hex,
        language="python",
        source=ECHO,
        args=[],
        input_kind="values",
        values=values,
        offer=to_units("0.01"),
    )
    owner = payer.user
    job, _ = services.deploy_job(
        owner=owner, identity=deployer.identity, payer=payer.address, spec=spec
    )
    return job.id


async def test_tasks_results_and_inputs_larger_than_a_frame_travel_in_parts(deployer, volunteer):
    values = [blob(n, 25_000) for n in range(1, 5)]  # 100 kB in all, 25 kB each
    job_id = await sync_to_async(deploy_directly)(deployer, values)
    client = await connect_client(deployer)
    await client.send_json_to({"type": "subscribe", "id": "s", "job": job_id})
    await receive_until(client, "subscribed")
    worker = await connect_worker(volunteer, cores=8)
    await worker.send_json_to({"type": "ready", "capacity": 8})
    task = await receive_until(worker, "task")
    # A task carries what fits in one frame beside the work function, not one slice per core.
    assert len(task["slices"]) == 2
    assert len(json.dumps(task)) <= FRAME

    # Each result in a frame of its own (three at once would not fit in 64 KiB).
    done = 0
    while done < 4:
        for piece in task["slices"]:
            result = {"slice": piece["slice"], "value": piece["datum"], "ms": 1.0}
            await worker.send_json_to(
                {"type": "result", "id": piece["slice"], "job": job_id, "results": [result]}
            )
            assert (await receive_until(worker, "ack"))["accepted"] == 1
            done += 1
        if done < 4:
            await worker.send_json_to({"type": "ready", "capacity": 8})
            task = await receive_until(worker, "task")
    await receive_until(client, "complete")

    pages = []
    start = 1
    while True:
        await client.send_json_to(
            {"type": "results", "id": start, "job": job_id, "start": start, "end": 4}
        )
        reply = await receive_until(client, "results")
        assert len(json.dumps(reply)) <= FRAME
        pages.append(reply["results"])
        if reply.get("next") is None:
            break
        assert reply["next"] == reply["results"][-1][0] + 1
        start = reply["next"]
    assert [len(page) for page in pages] == [2, 2]  # 100 kB of results: two 64 KiB frames
    assert [row for page in pages for row in page] == [[n, values[n - 1]] for n in range(1, 5)]

    await client.send_json_to({"type": "inputs", "id": "in", "job": job_id, "start": 1, "end": 4})
    inputs = await receive_until(client, "inputs")
    assert len(json.dumps(inputs)) <= FRAME
    assert inputs["values"] == values[:2]


async def test_a_value_that_cannot_travel_with_its_work_function_is_refused_at_deploy(deployer):
    client = await connect_client(deployer)
    before = await sync_to_async(balance_of)(deployer.account)
    source = ECHO + "# " + "padding " * 4_000 + "\n"  # 32 kB of work function
    await client.send_json_to(
        deployer.deploy(input={"kind": "values", "values": [1, blob(2, 30_000)]}, source=source)
    )
    refused = await receive_until(client, "error")
    assert refused["code"] == "EINVALID"
    assert "would not fit in one task frame" in refused["message"]
    assert await sync_to_async(Job.objects.count)() == 0
    assert await sync_to_async(SliceInput.objects.count)() == 0
    assert await sync_to_async(balance_of)(deployer.account) == before


async def test_a_slice_whose_workers_keep_vanishing_is_failed_and_its_escrow_refunded(
    deployer, volunteer, django_user_model
):
    second = await sync_to_async(make_volunteer)(django_user_model, "second@example.com")
    third = await sync_to_async(make_volunteer)(django_user_model, "third@example.com")
    client = await connect_client(deployer)
    job_id = await deploy(client, deployer, ["boom"], offer="0.5")
    assert await sync_to_async(balance_of)(deployer.account) == to_units("9.5")

    # One volunteer's tabs take the slice and vanish five times: that is one user's bad luck
    # (or mischief), not proof that the slice is at fault.
    for _ in range(5):
        await take_and_vanish(volunteer)
    slice_row = await sync_to_async(Slice.objects.get)(job_id=job_id, number=1)
    assert (slice_row.status, slice_row.lost) == ("new", 1)
    # A second user's worker vanishes too; a third's goes silent until its lease runs out.
    await take_and_vanish(second)
    status = await sync_to_async(lambda: Job.objects.get(pk=job_id).status)()
    assert status == JobStatus.RUNNING
    silent = await connect_worker(third)
    await silent.send_json_to({"type": "ready", "capacity": 1})
    await receive_until(silent, "task")
    later = timezone.now() + timedelta(hours=2)
    assert await sync_to_async(services.requeue_lapsed_leases)(now=later) == 1

    cancel = await receive_until(client, "cancel")
    assert cancel["data"]["code"] == "ELOSTSLICE"
    assert "slice 1 was handed out" in cancel["data"]["reason"]
    # Refunded whole, nobody paid, and the slice goes to no one again.
    assert await sync_to_async(balance_of)(deployer.account) == to_units(10)
    assert await sync_to_async(total_supply)() == await sync_to_async(sum_of_balances)()
    another = await connect_worker(volunteer)
    await another.send_json_to({"type": "ready", "capacity": 1})
    assert (await receive_until(another, "waiting"))["type"] == "waiting"


async def take_and_vanish(user: Any) -> None:
    worker = await connect_worker(user)
    await worker.send_json_to({"type": "ready", "capacity": 1})
    assert (await receive_until(worker, "task"))["slices"][0]["slice"] == 1
    await worker.disconnect()


async def test_a_stopped_worker_handing_slices_back_costs_the_slice_nothing(deployer, volunteer):
    client = await connect_client(deployer)
    job_id = await deploy(client, deployer, [1, 2])
    for _ in range(4):
        worker = await connect_worker(volunteer)
        await worker.send_json_to({"type": "ready", "capacity": 2})
        task = await receive_until(worker, "task")
        numbers = [piece["slice"] for piece in task["slices"]]
        await worker.send_json_to({"type": "return", "job": job_id, "slices": numbers})
        await worker.disconnect()
    lost = await sync_to_async(lambda: list(Slice.objects.values_list("lost", flat=True)))()
    assert lost == [0, 0]
    status = await sync_to_async(lambda: Job.objects.get(pk=job_id).status)()
    assert status == JobStatus.RUNNING
