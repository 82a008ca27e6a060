"""A worker's hello may name the only jobs it takes (`dcp worker --job`): it gets those jobs'
slices and no others, a second hello changes the list, a malformed list is refused and changes
nothing, and naming a job never widens what the worker's compute groups allow. Over the real
sockets, with the deploy frames the Python client builds."""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from dcp.protocol.limits import MAX_WORKER_JOBS
from portal.scheduler.groups import create_group
from portal.scheduler.models import ComputeGroup
from tests.scheduler.conftest import connect_worker
from tests.scheduler.test_compute_groups import credential, deploy, disconnect


@pytest.fixture
def group(first_dev: Any) -> tuple[ComputeGroup, str]:
    """A compute group of the deploying user, and its join secret."""
    return create_group(owner=first_dev, name="Lab machines")


async def hello(worker: WebsocketCommunicator, jobs: list[Any], **more: Any) -> dict[str, Any]:
    """Say hello again on a welcomed socket, naming `jobs`; the reply."""
    await worker.send_json_to({"type": "hello", "id": "jobs", "cores": 2, "jobs": jobs, **more})
    return await worker.receive_json_from()


async def ready(worker: WebsocketCommunicator) -> dict[str, Any]:
    """Ask for work; the task or `waiting` that answers (skipping acks and the like)."""
    await worker.send_json_to({"type": "ready", "capacity": 4})
    while True:
        frame = await worker.receive_json_from()
        if frame["type"] in {"task", "waiting"}:
            return frame


async def slices_of(worker: WebsocketCommunicator, job_id: str) -> list[int]:
    """The numbers of every slice of a two-slice job handed to this worker, asking as needed."""
    numbers: list[int] = []
    while len(numbers) < 2:
        task = await ready(worker)
        assert task["type"] == "task" and task["job"]["id"] == job_id, task
        numbers += [entry["slice"] for entry in task["slices"]]
    return sorted(numbers)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_worker_that_names_a_job_gets_that_jobs_slices_and_never_anothers(
    deployer, volunteer
):
    older_client, older = await deploy(deployer)
    newer_client, newer = await deploy(deployer)
    worker = await connect_worker(volunteer)

    welcome = await hello(worker, [newer["job"]])
    assert welcome["type"] == "welcome" and welcome["jobs"] == [newer["job"]]
    assert await slices_of(worker, newer["job"]) == [1, 2]
    # The older job has work, and is first in line for everyone else, but not for this worker.
    assert (await ready(worker))["type"] == "waiting"
    assert await worker.receive_nothing(timeout=0.2)

    # A second hello on the same socket changes the list.
    assert (await hello(worker, [older["job"]]))["jobs"] == [older["job"]]
    assert await slices_of(worker, older["job"]) == [1, 2]
    await disconnect(older_client, newer_client, worker)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_hello_without_jobs_takes_any_job_again(deployer, volunteer):
    client, accepted = await deploy(deployer)
    worker = await connect_worker(volunteer)
    await hello(worker, ["0" * 32])  # a job of the right form that does not exist
    assert (await ready(worker))["type"] == "waiting"

    welcome = await hello(worker, [])

    assert "jobs" not in welcome  # said only when the worker named some
    assert await slices_of(worker, accepted["job"]) == [1, 2]
    await disconnect(client, worker)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        (["not-a-job"], "a job id is 32 lowercase hex digits, not 'not-a-job'"),
        (["AB" * 16], "a job id is 32 lowercase hex digits"),
        ("ab" * 16, "jobs: Input should be a valid list"),
        (["ab" * 16] * (MAX_WORKER_JOBS + 1), f"at most {MAX_WORKER_JOBS} items"),
    ],
)
async def test_a_bad_jobs_list_is_refused_with_a_clear_error_and_changes_nothing(
    deployer, volunteer, jobs, message
):
    client, _ = await deploy(deployer)  # first in line, yet never this worker's
    other_client, other = await deploy(deployer)
    worker = await connect_worker(volunteer)
    await hello(worker, [other["job"]])

    refused = await hello(worker, jobs)

    assert refused["type"] == "error" and refused["id"] == "jobs"
    assert refused["code"] == "EINVALID"
    assert message in refused["message"] and "hello" in refused["message"]
    # The socket stays, and so does what the earlier hello said: only the other job.
    assert await slices_of(worker, other["job"]) == [1, 2]
    assert (await ready(worker))["type"] == "waiting"
    await disconnect(client, other_client, worker)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_naming_a_group_job_does_not_open_the_group_to_a_worker_that_did_not_join(
    deployer, volunteer, group
):
    client, group_job = await deploy(deployer, [credential(group)])
    worker = await connect_worker(volunteer)

    welcome = await hello(worker, [group_job["job"]])
    assert welcome["type"] == "welcome"
    assert (await ready(worker))["type"] == "waiting"
    assert await worker.receive_nothing(timeout=0.2)

    await hello(worker, [group_job["job"]], compute_groups=[credential(group)])
    assert await slices_of(worker, group_job["job"]) == [1, 2]
    await disconnect(client, worker)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_naming_a_public_job_does_not_bring_back_the_public_group_it_left(
    deployer, volunteer, group
):
    client, public_job = await deploy(deployer)
    worker = await connect_worker(volunteer)

    welcome = await hello(
        worker,
        [public_job["job"]],
        compute_groups=[credential(group)],
        leave_public_group=True,
    )

    assert welcome["public_group"] is False and welcome["jobs"] == [public_job["job"]]
    assert (await ready(worker))["type"] == "waiting"
    assert await worker.receive_nothing(timeout=0.2)
    await disconnect(client, worker)
