"""Compute groups route jobs: a job deployed into a group reaches only workers that joined it,
a worker that left the public group gets no public job, and a wrong join secret is refused at
deploy (client socket and REST) and at a worker's hello. Over the real sockets, with the deploy
frames the Python client builds."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

import dcp
from portal.api.services import create_api_key
from portal.bank.selectors import balance_of
from portal.scheduler import services
from portal.scheduler.consumers import WorkerConsumer
from portal.scheduler.groups import create_group
from portal.scheduler.models import ComputeGroup, Job
from portal.wallet.models import Key, KeyKind
from portal.wallet.services import create_key
from tests.scheduler.conftest import connect_client, connect_worker, receive_until

WORK = "def work(x):\n    return x * 2\n"
WRONG = "compute group {}: unknown group or wrong join secret"


@pytest.fixture
def group(first_dev: Any) -> tuple[ComputeGroup, str]:
    """A compute group of the deploying user, and its join secret."""
    return create_group(owner=first_dev, name="Lab machines")


def credential(group: tuple[ComputeGroup, str], secret: str | None = None) -> dict[str, str]:
    made, right = group
    return {"joinKey": made.join_key, "joinSecret": secret or right}


async def deploy(deployer: Any, compute_groups: list[dict[str, str]] | None = None) -> tuple:
    """A client socket and its reply to a two-slice job deployed with the client's own frame."""
    job = dcp.compute_for([1, 2], WORK, compute_groups=compute_groups)
    frame = job.deploy_frame(Decimal("0.01"), deployer.account_key)
    client = await connect_client(deployer)
    await client.send_json_to({**frame, "id": "deploy"})
    reply = await client.receive_json_from()
    return client, reply


async def join(worker: Any, compute_groups: list[dict[str, str]], leave_public: bool = False):
    await worker.send_json_to(
        {
            "type": "hello",
            "id": "join",
            "cores": 2,
            "compute_groups": compute_groups,
            "leave_public_group": leave_public,
        }
    )
    return await worker.receive_json_from()


async def disconnect(*communicators: Any) -> None:
    for communicator in communicators:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_group_job_never_reaches_a_public_only_worker_but_reaches_one_that_joined(
    deployer, volunteer, group
):
    client, accepted = await deploy(deployer, [credential(group)])
    assert accepted["type"] == "accepted", accepted
    public_only = await connect_worker(volunteer)
    await public_only.send_json_to({"type": "ready", "capacity": 2})
    assert (await public_only.receive_json_from())["type"] == "waiting"

    member = await connect_worker(volunteer)
    welcome = await join(member, [credential(group)])
    await member.send_json_to({"type": "ready", "capacity": 2})

    assert welcome["type"] == "welcome"
    assert welcome["compute_groups"] == [group[0].join_key]
    assert "public_group" not in welcome  # said only when it left the public group
    task = await receive_until(member, "task")
    assert task["job"]["id"] == accepted["job"]
    assert await public_only.receive_nothing(timeout=0.2)
    await disconnect(client, public_only, member)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_worker_that_left_the_public_group_gets_only_its_groups_jobs(
    deployer, volunteer, group
):
    client, public_job = await deploy(deployer)
    leaver = await connect_worker(volunteer)
    welcome = await join(leaver, [credential(group)], leave_public=True)
    await leaver.send_json_to({"type": "ready", "capacity": 2})
    assert welcome["public_group"] is False
    assert (await leaver.receive_json_from())["type"] == "waiting"

    other, group_job = await deploy(deployer, [credential(group)])
    task = await receive_until(leaver, "task")

    assert task["job"]["id"] == group_job["job"] != public_job["job"]
    await disconnect(client, other, leaver)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_worker_that_left_the_public_group_and_joined_none_gets_nothing(
    deployer, volunteer
):
    client, _ = await deploy(deployer)
    loner = await connect_worker(volunteer)
    welcome = await join(loner, [], leave_public=True)
    await loner.send_json_to({"type": "ready", "capacity": 2})

    assert "compute_groups" not in welcome and welcome["public_group"] is False
    assert (await loner.receive_json_from())["type"] == "waiting"
    assert await loner.receive_nothing(timeout=0.2)
    await disconnect(client, loner)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_deploy_with_a_wrong_join_secret_or_key_is_refused_storing_nothing(deployer, group):
    before = await database_sync_to_async(balance_of)(deployer.account)
    unknown = {"joinKey": "no-such-group", "joinSecret": "whatever"}

    client, wrong_secret = await deploy(deployer, [credential(group, secret="guessed")])
    other, wrong_key = await deploy(deployer, [credential(group), unknown])

    assert wrong_secret["type"] == wrong_key["type"] == "error"
    assert wrong_secret["code"] == wrong_key["code"] == "EINVALID"
    assert wrong_secret["message"] == WRONG.format(group[0].join_key)
    assert wrong_key["message"] == WRONG.format("no-such-group")
    assert "guessed" not in wrong_secret["message"]
    assert await database_sync_to_async(Job.objects.count)() == 0
    assert await database_sync_to_async(balance_of)(deployer.account) == before
    await disconnect(client, other)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_hello_with_a_wrong_join_secret_is_refused_and_changes_nothing(
    deployer, volunteer, group
):
    client, accepted = await deploy(deployer, [credential(group)])
    worker = await connect_worker(volunteer)  # welcomed: the public group only

    refused = await join(worker, [credential(group, secret="guessed")], leave_public=True)
    await worker.send_json_to({"type": "ready", "capacity": 2})

    assert refused["type"] == "error" and refused["id"] == "join"
    assert refused["code"] == "EINVALID"
    assert refused["message"] == WRONG.format(group[0].join_key)
    # The socket stays, and so does what its first hello said: it serves the public group.
    assert (await worker.receive_json_from())["type"] == "waiting"
    client_public, public_job = await deploy(deployer)
    task = await receive_until(worker, "task")
    assert task["job"]["id"] == public_job["job"] != accepted["job"]
    await disconnect(client, client_public, worker)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_first_hello_refused_leaves_the_worker_without_work(volunteer, group):
    worker = WebsocketCommunicator(WorkerConsumer.as_asgi(), "/ws/worker/")
    worker.scope["user"] = volunteer
    assert (await worker.connect())[0]

    refused = await join(worker, [credential(group, secret="guessed")])
    await worker.send_json_to({"type": "ready", "id": 2, "capacity": 2})

    assert refused["code"] == "EINVALID"
    assert (await worker.receive_json_from())["code"] == "ENOTAUTHENTICATED"
    await worker.disconnect()


# --- REST ---------------------------------------------------------------------------------


@pytest.fixture
def bearer(first_dev: Any) -> dict[str, str]:
    identity = create_key(user=first_dev, kind=KeyKind.IDENTITY, label="laptop")
    account = Key.objects.get(user=first_dev, kind=KeyKind.ACCOUNT, is_default=True)
    _, token = create_api_key(
        user=first_dev,
        label="ci",
        identity_address=identity.address,
        account_address=account.address,
    )
    return {"Authorization": f"Bearer {token}"}


def rest_deploy(headers: dict[str, str], compute_groups: list[dict[str, str]]) -> Any:
    body = {
        "work": {"language": "js", "function": "function (x) { return x * 2 }"},
        "slices": [1, 2],
        "slicePaymentOffer": 0.01,
        "computeGroups": compute_groups,
    }
    return Client().post("/api/v0/job", body, content_type="application/json", headers=headers)


def test_a_rest_deploy_into_a_group_goes_only_to_that_groups_workers(bearer, group):
    response = rest_deploy(bearer, [credential(group)])

    assert response.status_code == 201, response.content
    job_id = response.json()["jobId"]
    public_only = services.Capabilities()
    member = services.Capabilities(compute_groups=frozenset({group[0].pk}), public_group=False)
    assert services.claim_slices(worker="w-public", limit=10, capabilities=public_only) is None
    task = services.claim_slices(worker="w-member", limit=10, capabilities=member)
    assert task is not None and task.job.id == job_id


def test_a_rest_deploy_with_a_wrong_join_secret_is_400_and_stores_nothing(bearer, group, first_dev):
    account = Key.objects.get(user=first_dev, kind=KeyKind.ACCOUNT, is_default=True).address
    before = balance_of(account)

    response = rest_deploy(bearer, [credential(group, secret="guessed")])

    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "EINVALID", "message": WRONG.format(group[0].join_key)}
    }
    assert Job.objects.count() == 0 and balance_of(account) == before
