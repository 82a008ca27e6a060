"""Hostile and broken frames on both sockets: an error reply or a clean close, never a crash."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcp.protocol.limits import CLOSE_FLOOD
from tests.scheduler.conftest import connect_client, connect_worker, receive_until

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
message_types = st.sampled_from(
    [
        "hello",
        "ready",
        "result",
        "progress",
        "console",
        "return",
        "deploy",
        "results",
        "subscribe",
        "cancel",
        "add_slices",
        "close",
        "status",
        "jobs",
        "task",
        "x",
    ]
)
frames = st.one_of(
    st.text(min_size=1, max_size=200),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": message_types},
        optional={
            "id": json_values,
            "job": json_values,
            "slices": json_values,
            "results": json_values,
            "capacity": json_values,
            "input": json_values,
        },
    ).map(json.dumps),
)


async def probe_still_answers(communicator, probe: dict) -> None:
    """Drain what the frames caused, then check a probe still gets its reply."""
    await communicator.send_json_to(probe)
    while True:
        frame = await communicator.receive_json_from(timeout=5)
        if frame.get("id") == probe["id"]:
            return


@pytest.mark.django_db(transaction=True)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(frames, min_size=1, max_size=15))
def test_generated_frames_never_break_the_worker_socket(volunteer, batch):
    async def run() -> None:
        worker = await connect_worker(volunteer)
        for frame in batch:
            await worker.send_to(text_data=frame)
        await probe_still_answers(worker, {"type": "teleport", "id": "probe"})
        await worker.disconnect()

    asyncio.run(run())


@pytest.mark.django_db(transaction=True)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(frames, min_size=1, max_size=15))
def test_generated_frames_never_break_the_client_socket(db, batch):
    async def run() -> None:
        client = await connect_client()
        for frame in batch:
            await client.send_to(text_data=frame)
        await probe_still_answers(client, {"type": "jobs", "id": "probe"})
        await client.disconnect()

    asyncio.run(run())


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_flood_is_told_once_then_closed_and_others_carry_on(volunteer, settings):
    settings.SOCKET_MESSAGES_PER_SECOND = 20
    flooder = await connect_worker(volunteer)
    bystander = await connect_worker(volunteer)
    for _ in range(200):
        await flooder.send_json_to({"type": "progress", "job": "x", "slices": [1]})
    told, closed = [], None
    while closed is None:
        output = await flooder.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            closed = output["code"]
        else:
            told.append(json.loads(output["text"])["code"])
    assert told and set(told) == {"ERATELIMIT"}
    assert closed == CLOSE_FLOOD
    await bystander.send_json_to({"type": "ready", "capacity": 1})
    assert (await bystander.receive_json_from())["type"] == "waiting"
    await bystander.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_results_for_slices_the_worker_does_not_hold_are_not_paid(deployer, volunteer):
    from portal.bank.selectors import balance_of

    client = await connect_client(deployer)
    await client.send_json_to(deployer.deploy(input={"kind": "range", "start": 1, "end": 3}))
    job_id = (await receive_until(client, "accepted"))["job"]
    worker = await connect_worker(volunteer)
    forged = [{"slice": n, "value": 0} for n in (1, 2, 3)]
    await worker.send_json_to({"type": "result", "id": 1, "job": job_id, "results": forged})
    ack = await receive_until(worker, "ack")
    assert ack["accepted"] == 0 and ack["earned"] == "0"
    payee = await sync_to_async(lambda: volunteer.keys.get(is_default=True).address)()
    assert await sync_to_async(balance_of)(payee) == 0
    await client.disconnect()
    await worker.disconnect()
