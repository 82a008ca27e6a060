"""Workers store big results: each task carries an upload ticket for its job, good only while the
worker holds a slice of that job; the object is the job owner's (their quota), and the scheduler
takes a result that references the store only when the store has that object with that size."""

from __future__ import annotations

import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from portal.scheduler.models import Slice, SliceStatus
from portal.store.auth import ticket_seconds
from portal.store.models import Ownership
from portal.store.selectors import object_of, used_bytes
from tests.scheduler.conftest import Deployer, connect_client, connect_worker, receive_until

from .conftest import digest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

RESULT = b"\x00\x01 a big result \xfe\xff" * 2048


async def task_for(deployer: Deployer, volunteer: Any) -> tuple[Any, Any, dict[str, Any]]:
    """A one-slice job, deployed; a worker of `volunteer` holding its slice: (client, worker,
    the task frame)."""
    client = await connect_client(deployer)
    await client.send_json_to(deployer.deploy(input={"kind": "values", "values": [7]}))
    await receive_until(client, "accepted")
    worker = await connect_worker(volunteer, cores=1)
    await worker.send_json_to({"type": "ready", "capacity": 1})
    return client, worker, await receive_until(worker, "task")


async def put(data: bytes, ticket: str, sha256: str | None = None) -> Any:
    """PUT /store/<sha256 of data> as a worker, with a task's upload ticket."""
    headers = {"Authorization": f"DCP-Worker {ticket}"}
    path = f"/store/{sha256 or digest(data)}"
    return await sync_to_async(Client().generic)(
        "PUT", path, data, "application/octet-stream", headers=headers
    )


async def send_result(worker: WebsocketCommunicator, task: dict[str, Any], value: Any) -> Any:
    number = task["slices"][0]["slice"]
    result = {"slice": number, "value": value, "ms": 1.0}
    await worker.send_json_to(
        {"type": "result", "id": "r", "job": task["job"]["id"], "results": [result]}
    )
    return await receive_until(worker, "ack")


def error_of(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


async def test_a_worker_stores_a_big_result_for_the_job_owner_who_gets_its_reference(
    deployer: Deployer, volunteer: Any, first_dev: Any
) -> None:
    client, worker, task = await task_for(deployer, volunteer)

    response = await put(RESULT, task["upload_ticket"])
    assert response.status_code == 201
    assert response["Access-Control-Allow-Origin"] == "*"  # a sandbox's frame reads it
    assert await sync_to_async(used_bytes)(first_dev) == len(RESULT)
    assert await sync_to_async(used_bytes)(volunteer) == 0

    reference = {"$blob": digest(RESULT), "size": len(RESULT)}
    ack = await send_result(worker, task, reference)
    assert ack["accepted"] == 1
    event = await receive_until(client, "result")
    assert event["data"] == [{"slice": 1, "value": reference}]
    await client.disconnect()
    await worker.disconnect()


async def test_a_result_that_references_what_the_store_lacks_is_refused_and_requeued(
    deployer: Deployer, volunteer: Any
) -> None:
    client, worker, task = await task_for(deployer, volunteer)
    await put(RESULT, task["upload_ticket"])

    wrong_size = {"$blob": digest(RESULT), "size": len(RESULT) + 1}
    assert (await send_result(worker, task, wrong_size))["accepted"] == 0
    rejected = await receive_until(client, "rejected")
    assert "store lacks" in rejected["data"]["reason"]
    status = await sync_to_async(lambda: Slice.objects.get(number=1).status)()
    assert status == SliceStatus.NEW  # for another worker, at once

    await worker.send_json_to({"type": "ready", "capacity": 1})
    task = await receive_until(worker, "task")
    missing = {"$blob": digest(b"never stored"), "size": 12}
    assert (await send_result(worker, task, missing))["accepted"] == 0
    await client.disconnect()
    await worker.disconnect()


async def test_an_upload_ticket_holds_only_while_its_worker_holds_a_slice_of_its_job(
    deployer: Deployer, volunteer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, worker, task = await task_for(deployer, volunteer)
    ticket = task["upload_ticket"]

    forged = await put(RESULT, ticket[:-3] + ("aaa" if not ticket.endswith("aaa") else "bbb"))
    assert error_of(forged) == (401, "EAUTH")
    later = time.time() + ticket_seconds() + 5
    with monkeypatch.context() as patched:
        patched.setattr(time, "time", lambda: later)
        expired = await put(RESULT, ticket)
    assert error_of(expired) == (401, "EAUTH")
    assert "expired" in expired.json()["error"]["message"]

    assert (await send_result(worker, task, 14))["accepted"] == 1  # the job's one slice is done
    after = await put(RESULT, ticket)
    assert error_of(after) == (403, "ENOTLEASED")
    assert await sync_to_async(object_of)(digest(RESULT)) is None
    await client.disconnect()
    await worker.disconnect()


async def test_a_workers_upload_counts_against_the_job_owners_quota(
    deployer: Deployer, volunteer: Any, settings: Any
) -> None:
    settings.STORE_MAX_BYTES_PER_USER = len(RESULT) - 1
    client, worker, task = await task_for(deployer, volunteer)

    response = await put(RESULT, task["upload_ticket"])

    assert error_of(response) == (413, "EQUOTA")
    assert not await sync_to_async(Ownership.objects.exists)()
    await client.disconnect()
    await worker.disconnect()


async def test_a_cross_origin_upload_is_preflighted(db: None) -> None:
    response = await sync_to_async(Client().options)(
        f"/store/{digest(RESULT)}",
        headers={"Origin": "null", "Access-Control-Request-Method": "PUT"},
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "PUT" in response["Access-Control-Allow-Methods"]
    assert "Authorization" in response["Access-Control-Allow-Headers"]
