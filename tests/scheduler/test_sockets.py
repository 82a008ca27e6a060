"""What each socket refuses: strangers, bad signatures, unpaid jobs and malformed frames."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from eth_account import Account

from dcp.protocol.credits import to_units
from dcp.protocol.limits import CLOSE_TOO_BIG
from portal.asgi import application
from portal.bank.selectors import balance_of
from portal.scheduler.consumers import ClientConsumer
from portal.scheduler.models import Job
from tests.scheduler.conftest import Deployer, connect_client, connect_worker, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def test_worker_socket_refuses_a_foreign_origin(volunteer):
    communicator = WebsocketCommunicator(
        application, "/ws/worker/", headers=[(b"origin", b"http://evil.example.com")]
    )
    connected, _ = await communicator.connect()
    assert not connected


async def test_a_worker_without_a_session_or_a_token_is_refused_at_its_hello():
    communicator = WebsocketCommunicator(
        application, "/ws/worker/", headers=[(b"origin", b"http://127.0.0.1:8000")]
    )
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to(
        {"type": "hello", "id": 1, "version": 1, "cores": 1, "capabilities": {}}
    )
    error = await communicator.receive_json_from()
    closed = await communicator.receive_output()

    assert error["code"] == "ENOTAUTHENTICATED"
    assert "worker token" in error["message"]
    assert closed == {"type": "websocket.close", "code": 4401}


async def test_an_unregistered_identity_is_told_where_to_create_one():
    stranger = Deployer(Account.create().key, Account.create().key)
    client = WebsocketCommunicator(ClientConsumer.as_asgi(), "/ws/client/")
    await client.connect()
    challenge = await client.receive_json_from()
    await client.send_json_to(stranger.hello(challenge["nonce"]))
    error = await client.receive_json_from()
    assert error["code"] == "ENOIDENTITY"
    assert error["message"] == "identity not registered: create one on the First Devs tab"
    await client.disconnect()


async def test_a_signature_over_another_challenge_is_refused(deployer):
    client = await connect_client()
    await client.send_json_to(deployer.hello("00" * 32))
    error = await client.receive_json_from()
    assert error["code"] == "EBADSIG"
    await client.send_json_to(deployer.deploy(input={"kind": "range", "start": 1, "end": 2}))
    assert (await client.receive_json_from())["code"] == "ENOTAUTHENTICATED"
    await client.disconnect()


async def test_too_few_credits_deploys_nothing(deployer):
    client = await connect_client(deployer)
    await client.send_json_to(
        deployer.deploy(input={"kind": "range", "start": 1, "end": 2000}, offer="0.01")
    )
    error = await receive_until(client, "error")
    assert error["code"] == "ENOFUNDS"
    assert await sync_to_async(Job.objects.count)() == 0
    assert await sync_to_async(balance_of)(deployer.account) == to_units(10)
    await client.disconnect()


async def test_a_payment_that_does_not_cover_the_job_is_refused(deployer):
    client = await connect_client(deployer)
    await client.send_json_to(
        deployer.deploy(
            input={"kind": "range", "start": 1, "end": 10}, offer="0.01", max_total="0.05"
        )
    )
    error = await receive_until(client, "error")
    assert error["code"] == "EBADPAYMENT"
    await client.disconnect()


async def test_a_payment_signed_by_another_key_is_refused(deployer):
    client = await connect_client(deployer)
    frame = deployer.deploy(input={"kind": "range", "start": 1, "end": 3})
    frame["payment"]["account"] = Account.create().address
    await client.send_json_to(frame)
    assert (await receive_until(client, "error"))["code"] == "EBADPAYMENT"
    await client.disconnect()


async def test_a_user_outside_first_devs_cannot_deploy(user):
    from portal.wallet.models import Key, KeyKind
    from portal.wallet.services import create_key, private_key_of

    identity = await sync_to_async(create_key)(user=user, kind=KeyKind.IDENTITY, label="x")
    account = await sync_to_async(Key.objects.get)(user=user, is_default=True)
    person = Deployer(
        await sync_to_async(private_key_of)(key=identity),
        await sync_to_async(private_key_of)(key=account),
    )
    client = await connect_client(person)
    await client.send_json_to(
        person.deploy(input={"kind": "range", "start": 1, "end": 3}, offer="0")
    )
    error = await receive_until(client, "error")
    assert error["code"] == "ENOTFIRSTDEV"
    await client.disconnect()


async def test_deploying_the_same_ref_twice_makes_one_job(deployer):
    client = await connect_client(deployer)
    frame = deployer.deploy(input={"kind": "range", "start": 1, "end": 5}, ref="same-ref-123")
    await client.send_json_to(frame)
    first = await receive_until(client, "accepted")
    await client.send_json_to(frame)
    second = await receive_until(client, "accepted")
    assert first["job"] == second["job"]
    assert await sync_to_async(Job.objects.count)() == 1
    assert await sync_to_async(balance_of)(deployer.account) == to_units("9.95")
    await client.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "EINVALID"),
        ("[1, 2]", "EINVALID"),
        ('{"type": "teleport", "id": 3}', "EUNKNOWN"),
        ('{"type": "ready", "id": 4, "capacity": "lots"}', "EINVALID"),
        ('{"type": "result", "id": 5, "job": "x", "results": [{"slice": 0}]}', "EINVALID"),
    ],
)
async def test_malformed_worker_frames_get_an_error_and_the_socket_stays_usable(
    volunteer, frame, code
):
    worker = await connect_worker(volunteer)
    await worker.send_to(text_data=frame)
    error = await worker.receive_json_from()
    assert error["type"] == "error" and error["code"] == code
    await worker.send_json_to({"type": "ready", "capacity": 1})
    assert (await worker.receive_json_from())["type"] == "waiting"
    await worker.disconnect()


async def test_a_binary_frame_gets_an_error(volunteer):
    worker = await connect_worker(volunteer)
    await worker.send_to(bytes_data=b"\x00\x01")
    assert (await worker.receive_json_from())["code"] == "EINVALID"
    await worker.disconnect()


async def test_a_frame_over_the_size_limit_closes_the_socket(volunteer, settings):
    settings.MAX_FRAME_BYTES = 1000
    worker = await connect_worker(volunteer)
    await worker.send_to(
        text_data='{"type": "console", "job": "x", "message": "' + "a" * 2000 + '"}'
    )
    assert await worker.receive_output() == {"type": "websocket.close", "code": CLOSE_TOO_BIG}
