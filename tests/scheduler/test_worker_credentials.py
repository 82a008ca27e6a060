"""Workers without a signed-in session: a worker token works as its owner, anonymous workers
work only where the operator allows them, and any worker may be paid into any account of the
portal. Driven over the worker socket, on SQLite and (with DATABASE_URL) PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from dcp.protocol.credits import to_units
from portal.asgi import application
from portal.bank.selectors import balance_of, sum_of_balances, total_supply
from portal.scheduler import worker_credentials
from portal.scheduler.models import WorkerReputation, WorkerTally
from tests.scheduler.conftest import connect_client, connect_worker, make_volunteer, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

THREE = {"kind": "range", "start": 1, "end": 3, "step": 1}
ORIGIN = [(b"origin", b"http://127.0.0.1:8000")]


async def open_worker() -> WebsocketCommunicator:
    """A worker socket with no session, through the portal's own routing (Origin checked)."""
    communicator = WebsocketCommunicator(application, "/ws/worker/", headers=ORIGIN)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def say_hello(worker: WebsocketCommunicator, **fields: Any) -> dict[str, Any]:
    await worker.send_json_to({"type": "hello", "id": 1, "cores": 3, **fields})
    return await worker.receive_json_from(timeout=5)


async def compute_all(worker: WebsocketCommunicator) -> dict[str, Any]:
    """Take one task of the three slices and answer it; returns the ack."""
    await worker.send_json_to({"type": "ready", "capacity": 3})
    task = await receive_until(worker, "task")
    results = [{"slice": s["slice"], "value": s["datum"] * 2} for s in task["slices"]]
    await worker.send_json_to(
        {"type": "result", "id": "r", "job": task["job"]["id"], "results": results}
    )
    return await receive_until(worker, "ack")


async def deploy_three(deployer: Any, verify: dict[str, Any] | None = None) -> Any:
    client = await connect_client(deployer)
    await client.send_json_to(deployer.deploy(input=THREE, verify=verify))
    await receive_until(client, "accepted")
    return client


async def default_address(user: Any) -> str:
    return await sync_to_async(lambda: user.keys.get(is_default=True).address)()


async def assert_closed_unauthenticated(worker: WebsocketCommunicator, message: str) -> None:
    error = await worker.receive_json_from(timeout=5)
    assert error["type"] == "error" and error["code"] == "ENOTAUTHENTICATED"
    assert error["message"] == message
    assert await worker.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}


async def test_a_worker_token_works_without_a_session_and_is_paid(deployer, volunteer):
    token, text = await sync_to_async(worker_credentials.create_worker_token)(
        owner=volunteer, name="lab server"
    )
    client = await deploy_three(deployer)
    worker = await open_worker()
    welcome = await say_hello(worker, token=text)
    assert welcome["type"] == "welcome"
    assert welcome["address"] == await default_address(volunteer)
    ack = await compute_all(worker)
    assert ack["accepted"] == 3 and ack["earned"] == "0.03"
    await receive_until(client, "complete")
    assert await sync_to_async(balance_of)(welcome["address"]) == to_units("0.03")
    tally = await sync_to_async(WorkerTally.objects.get)(user=volunteer)
    assert tally.slices == 3
    await sync_to_async(token.refresh_from_db)()
    assert token.last_used_at is not None
    await worker.disconnect()
    await client.disconnect()


async def test_a_revoked_worker_token_is_refused(volunteer):
    token, text = await sync_to_async(worker_credentials.create_worker_token)(
        owner=volunteer, name="old laptop"
    )
    await sync_to_async(worker_credentials.revoke_worker_token)(token=token)
    worker = await open_worker()
    await worker.send_json_to({"type": "hello", "id": 1, "token": text})
    await assert_closed_unauthenticated(worker, "unknown or revoked worker token")


async def test_revoking_a_worker_token_stops_its_workers(volunteer):
    token, text = await sync_to_async(worker_credentials.create_worker_token)(
        owner=volunteer, name="lab server"
    )
    worker = await open_worker()
    assert (await say_hello(worker, token=text))["type"] == "welcome"
    await sync_to_async(worker_credentials.revoke_worker_token)(token=token)
    await assert_closed_unauthenticated(worker, "the worker token was revoked")


async def test_a_worker_without_credentials_is_refused_by_default():
    worker = await open_worker()
    await worker.send_json_to({"type": "hello", "id": 1, "payment_address": "0x" + "ab" * 20})
    await assert_closed_unauthenticated(
        worker, "sign in to the portal, or say hello with a worker token"
    )


async def test_an_anonymous_worker_is_paid_to_the_address_it_names(deployer, volunteer, settings):
    settings.ALLOW_ANONYMOUS_WORKERS = True
    payee = (await default_address(volunteer)).lower()  # any case will do
    client = await deploy_three(deployer)
    worker = await open_worker()
    welcome = await say_hello(worker, payment_address=payee)
    assert welcome["type"] == "welcome"
    assert welcome["address"] == await default_address(volunteer)  # EIP-55
    ack = await compute_all(worker)
    assert ack["accepted"] == 3 and ack["earned"] == "0.03"
    await receive_until(client, "complete")
    assert await sync_to_async(balance_of)(welcome["address"]) == to_units("0.03")
    assert await sync_to_async(total_supply)() == await sync_to_async(sum_of_balances)()
    await worker.disconnect()
    await client.disconnect()


async def test_an_anonymous_worker_must_name_its_payment_address(settings):
    settings.ALLOW_ANONYMOUS_WORKERS = True
    worker = await open_worker()
    refused = await say_hello(worker)
    assert refused["type"] == "error" and refused["code"] == "EINVALID"
    assert refused["message"] == "an anonymous worker must name its payment_address"
    await worker.send_json_to({"type": "ready", "capacity": 1})
    assert (await worker.receive_json_from())["code"] == "ENOTAUTHENTICATED"
    await worker.disconnect()


async def test_a_worker_is_paid_into_another_users_account_it_names(
    deployer, volunteer, django_user_model
):
    friend = await sync_to_async(make_volunteer)(django_user_model, "friend@example.com")
    friends_address = await default_address(friend)
    client = await deploy_three(deployer)
    worker = await connect_worker(volunteer)
    welcome = await say_hello(worker, payment_address=friends_address)
    assert welcome["address"] == friends_address
    ack = await compute_all(worker)
    assert ack["earned"] == "0.03"
    await receive_until(client, "complete")
    assert await sync_to_async(balance_of)(friends_address) == to_units("0.03")
    assert await sync_to_async(balance_of)(await default_address(volunteer)) == 0
    assert await sync_to_async(total_supply)() == await sync_to_async(sum_of_balances)()
    await worker.disconnect()
    await client.disconnect()


async def test_an_address_of_no_account_is_refused(volunteer):
    worker = await connect_worker(volunteer)
    stranger = "0x" + "12" * 20
    refused = await say_hello(worker, payment_address=stranger)
    assert refused["code"] == "EINVALID"
    assert refused["message"] == f"no account with address {stranger}"
    malformed = await say_hello(worker, payment_address="0x1234")
    assert malformed["code"] == "EINVALID"
    await worker.disconnect()


async def test_an_anonymous_worker_is_never_trusted_alone(deployer, volunteer, settings):
    """However long their streak, anonymous results wait for another user's to agree."""
    settings.ALLOW_ANONYMOUS_WORKERS = True
    anonymous = await sync_to_async(worker_credentials.anonymous_workers_user)()
    await sync_to_async(WorkerReputation.objects.create)(user=anonymous, streak=1000)
    adaptive = {"quorum": 2, "adaptive": True, "spot_check": 1e-9}
    client = await deploy_three(deployer, verify=adaptive)
    first = await open_worker()
    await say_hello(first, payment_address=await default_address(volunteer))
    assert (await compute_all(first))["earned"] == "0"
    # A second anonymous connection is the same party: it gets nothing to vote on.
    second = await open_worker()
    await say_hello(second, payment_address=await default_address(volunteer))
    await second.send_json_to({"type": "ready", "capacity": 3})
    assert (await second.receive_json_from(timeout=5))["type"] == "waiting"
    await first.disconnect()
    await second.disconnect()
    await client.disconnect()
