"""One user's heavy request does not hold up everyone else's: a deploy of 300,000 values is
parsed and stored aside, and another client's requests are answered meanwhile."""

from __future__ import annotations

import asyncio
import os

import pytest
from asgiref.sync import sync_to_async

from portal.scheduler.models import Job, SliceInput
from tests.scheduler.conftest import connect_client, connect_worker, receive_until

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.mark.asyncio
async def test_a_huge_deploy_does_not_hold_up_another_clients_requests(deployer):
    heavy = await connect_client(deployer)
    other = await connect_client(deployer)
    values = list(range(300_000))
    await heavy.send_json_to(deployer.deploy(input={"kind": "values", "values": values}, offer="0"))
    for n in range(3):
        await other.send_json_to({"type": "jobs", "id": n})
        assert (await receive_until(other, "jobs"))["id"] == n
    # Three round trips of the other client done, and the big deploy still being stored.
    assert await heavy.receive_nothing(timeout=0.01)
    accepted = await receive_until(heavy, "accepted", timeout=120)
    assert accepted["total"] == 300_000


@pytest.mark.asyncio
async def test_jobs_take_turns_so_an_older_big_job_does_not_hold_every_worker(deployer, volunteer):
    client = await connect_client(deployer)
    big = await deploy(client, deployer, {"kind": "range", "start": 1, "end": 1000, "step": 1})
    small = await deploy(client, deployer, {"kind": "range", "start": 1, "end": 2, "step": 1})
    worker = await connect_worker(volunteer, cores=1)
    served = []
    for _ in range(3):
        await worker.send_json_to({"type": "ready", "capacity": 1})
        task = await receive_until(worker, "task")
        served.append(task["job"]["id"])
        results = [{"slice": s["slice"], "value": 0, "ms": 1.0} for s in task["slices"]]
        job = task["job"]["id"]
        await worker.send_json_to({"type": "result", "id": 1, "job": job, "results": results})
        await receive_until(worker, "ack")
    # The newer job is served in turn, not after the thousand slices of the older one.
    assert served == [big, small, big]


async def deploy(client, deployer, input):
    await client.send_json_to(deployer.deploy(input=input, offer="0"))
    return (await receive_until(client, "accepted"))["job"]


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="needs PostgreSQL (DATABASE_URL=postgres://...): SQLite has one writer, and a writer "
    "waiting on its lock may wait until a huge deploy has stored every batch",
)
@pytest.mark.asyncio
async def test_another_users_deploy_is_stored_while_a_huge_one_is(deployer, volunteer):
    heavy = await connect_client(deployer)
    other = await connect_client(deployer)
    values = list(range(300_000))
    await heavy.send_json_to(deployer.deploy(input={"kind": "values", "values": values}, offer="0"))
    small = deployer.deploy(input={"kind": "values", "values": [1, 2, 3]}, offer="0")
    stored = sync_to_async(lambda: SliceInput.objects.count())
    for _ in range(600):  # until the first of its batches is in (other readers see it)
        if await stored():
            break
        await asyncio.sleep(0.1)
    await other.send_json_to(small)
    # The small deploy's values are stored between the huge one's batches, not after them all.
    assert (await receive_until(other, "accepted", timeout=120))["total"] == 3
    huge = await sync_to_async(Job.objects.exclude(total=3).get)()
    assert huge.total < 300_000 and huge.is_open  # still being stored, open meanwhile
    assert (await receive_until(heavy, "accepted", timeout=120))["total"] == 300_000
    job = await sync_to_async(Job.objects.get)(total=300_000)
    assert not job.is_open  # open only while its values were being stored


def test_a_deploy_cut_off_midway_goes_on_when_deployed_again(first_dev, deployer):
    from portal.bank.selectors import balance_of
    from portal.scheduler import services
    from portal.wallet.models import Key

    payer = Key.objects.get(address=deployer.account)
    values = list(range(12_000))
    spec = services.JobSpec(
        ref="cut-off",
        language="python",
        source="def work(x):\n    return x\n",
        args=[],
        input_kind="values",
        values=values,
        offer=1000,
    )
    job, created = services.deploy_job(
        owner=first_dev, identity=deployer.identity, payer=payer.address, spec=spec
    )
    assert created and job.total == 12_000 and not job.is_open
    paid = balance_of(payer.address)
    # As if the server died after the first batch: the rest was never stored.
    SliceInput.objects.filter(job=job, number__gt=services.STORE_BATCH).delete()
    Job.objects.filter(pk=job.pk).update(total=services.STORE_BATCH, is_open=True)

    again, created = services.deploy_job(
        owner=first_dev, identity=deployer.identity, payer=payer.address, spec=spec
    )
    assert not created and again.id == job.id
    again.refresh_from_db()
    assert (again.total, again.is_open) == (12_000, False)
    stored = SliceInput.objects.filter(job=job).order_by("number")
    assert list(stored.values_list("datum", flat=True)) == values
    assert balance_of(payer.address) == paid  # paid for once
