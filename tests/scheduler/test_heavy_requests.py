"""One user's heavy request does not hold up everyone else's: a deploy of 300,000 values is
parsed and stored aside, and another client's requests are answered meanwhile."""

from __future__ import annotations

import pytest

from tests.scheduler.conftest import connect_client, connect_worker, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


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
