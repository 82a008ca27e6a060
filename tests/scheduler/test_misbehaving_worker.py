"""A worker that lies or misbehaves is not paid, does not break the scheduler, and the job's
owner is told.

Results for slices it was not given, results sent twice, results after its lease lapsed,
results for work it cannot do and frames the protocol refuses are driven over the worker
socket the way Channels' own tests do (each test on its own database, PostgreSQL included);
floods and frames over the size limit go over a real socket to a live daphne server in
test_verified_live.py (and over the communicator in test_bad_frames.py). Each time an honest
worker of another user still completes the job, and the misbehaving worker's account is not
credited for anything it did not compute.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db.models import Sum

from dcp.protocol.credits import format_credits, to_units
from portal.bank.models import Entry
from portal.bank.selectors import balance_of, sum_of_balances, total_supply
from portal.scheduler import services
from portal.scheduler.consumers import WorkerConsumer
from portal.scheduler.models import Job, JobStatus, Slice
from tests.scheduler.conftest import (
    Deployer,
    connect_client,
    connect_worker,
    make_volunteer,
    receive_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

OFFER = "0.01"


def double(x: Any) -> Any:
    return x * 2


# --- over the worker socket (WebsocketCommunicator) -------------------------------------------


@pytest.fixture
def rogue(django_user_model: Any) -> Any:
    """A volunteer whose worker tab misbehaves."""
    return make_volunteer(django_user_model, "rogue@example.com")


async def address_of(user: Any) -> str:
    return await sync_to_async(lambda: user.keys.get(is_default=True).address)()


async def deploy(client: WebsocketCommunicator, deployer: Deployer, frame: dict[str, Any]) -> str:
    await client.send_json_to(frame)
    return (await receive_until(client, "accepted"))["job"]


async def deploy_range(client: WebsocketCommunicator, deployer: Deployer, end: int) -> str:
    frame = deployer.deploy(input={"kind": "range", "start": 1, "end": end}, offer=OFFER)
    return await deploy(client, deployer, frame)


async def take_task(worker: WebsocketCommunicator, capacity: int = 1) -> dict[str, Any]:
    await worker.send_json_to({"type": "ready", "capacity": capacity})
    return await receive_until(worker, "task")


async def send_results(
    worker: WebsocketCommunicator, job_id: str, results: list[tuple[int, Any]], **extra: Any
) -> dict[str, Any]:
    """Send one `result` frame claiming these (slice, value) pairs; the ack."""
    frame = {
        "type": "result",
        "id": "batch",
        "job": job_id,
        "results": [{"slice": n, "value": value, "ms": 1.0} for n, value in results],
        **extra,
    }
    await worker.send_json_to(frame)
    return await receive_until(worker, "ack")


async def answer(worker: WebsocketCommunicator, task: dict[str, Any]) -> dict[str, Any]:
    """Compute a task honestly; the ack."""
    pairs = [(s["slice"], double(s["datum"])) for s in task["slices"]]
    return await send_results(worker, task["job"]["id"], pairs)


async def complete_honestly(
    client: WebsocketCommunicator, honest: WebsocketCommunicator, remaining: int
) -> None:
    """The honest worker computes what is left of the job; the owner hears it complete."""
    while remaining > 0:
        remaining -= (await answer(honest, await take_task(honest, capacity=8)))["accepted"]
    await receive_until(client, "complete")


async def honest_finish(
    client: WebsocketCommunicator,
    honest: WebsocketCommunicator,
    job_id: str,
    *,
    remaining: int,
    total: int,
    rogue: Any,
) -> None:
    """The honest worker computes what is left: every result of the job is right, the rogue
    was paid nothing, and the ledger is whole."""
    await complete_honestly(client, honest, remaining=remaining)
    assert await stored_results(client, job_id) == [[n, n * 2] for n in range(1, total + 1)]
    await assert_paid(rogue, 0)
    await assert_ledger_whole()


async def stored_results(client: WebsocketCommunicator, job_id: str) -> list[list[Any]]:
    await client.send_json_to(
        {"type": "results", "id": "fetch", "job": job_id, "start": 1, "end": 99}
    )
    return (await receive_until(client, "results"))["results"]


@sync_to_async
def assert_ledger_whole() -> None:
    unbalanced = Entry.objects.values("txn").annotate(total=Sum("amount")).exclude(total=0)
    assert list(unbalanced) == []  # every transaction sums to zero
    assert total_supply() == sum_of_balances()  # credits neither appeared nor vanished


async def assert_paid(user: Any, slices: int) -> None:
    assert await sync_to_async(balance_of)(await address_of(user)) == slices * to_units(OFFER)


def assert_rejected(event: dict[str, Any], slices: list[int]) -> None:
    data = event["data"]
    assert sorted(data["slices"]) == sorted(slices)
    assert data["count"] == len(slices)
    assert isinstance(data["reason"], str) and data["reason"]


async def lapse_leases(job_id: str) -> None:
    """Every lease of the job runs out (as if `lease_seconds` went by without progress)."""
    await sync_to_async(
        lambda: Slice.objects.filter(job_id=job_id).update(lease_expires="2000-01-01T00:00:00Z")
    )()


async def connect_capable_worker(user: Any, capabilities: dict[str, Any]) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(WorkerConsumer.as_asgi(), "/ws/worker/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    hello = {"type": "hello", "id": 1, "cores": 1, "capabilities": capabilities}
    await communicator.send_json_to(hello)
    assert (await communicator.receive_json_from())["type"] == "welcome"
    return communicator


async def disconnect(*communicators: WebsocketCommunicator) -> None:
    for communicator in communicators:
        await communicator.disconnect()


async def test_results_for_slices_never_leased_to_the_worker_are_refused_and_reported(
    deployer, volunteer, rogue
):
    client = await connect_client(deployer)
    job_id = await deploy_range(client, deployer, end=4)
    honest = await connect_worker(volunteer, cores=2)
    task = await take_task(honest, capacity=2)
    held_by_honest = [s["slice"] for s in task["slices"]]
    liar = await connect_worker(rogue, cores=1)

    # Another worker's leased slices, a slice never handed out, a number past the job's end.
    forged = [*held_by_honest, 4, 99]
    ack = await send_results(liar, job_id, [(n, "forged") for n in forged])
    assert (ack["accepted"], ack["earned"]) == (0, "0")
    assert_rejected(await receive_until(client, "rejected"), forged)

    assert (await answer(honest, task))["accepted"] == 2  # the forgery took nothing from it
    await honest_finish(client, honest, job_id, remaining=2, total=4, rogue=rogue)
    await assert_paid(volunteer, 4)
    await disconnect(client, honest, liar)


async def test_a_result_sent_twice_is_paid_once_and_the_repeat_is_reported(
    deployer, volunteer, rogue
):
    client = await connect_client(deployer)
    job_id = await deploy_range(client, deployer, end=3)
    worker = await connect_worker(rogue, cores=1)
    first = await take_task(worker)
    assert (await answer(worker, first))["accepted"] == 1
    number = first["slices"][0]["slice"]

    repeat = await send_results(worker, job_id, [(number, "again")])
    assert (repeat["accepted"], repeat["earned"]) == (0, "0")
    assert_rejected(await receive_until(client, "rejected"), [number])

    # Duplicates inside one batch: each held slice is paid once, however often it is sent.
    second = await take_task(worker)
    answers = [(s["slice"], double(s["datum"])) for s in second["slices"]]
    ack = await send_results(worker, job_id, [answers[0]] * 5 + answers[1:])
    earned = format_credits(to_units(OFFER) * len(answers))
    assert (ack["accepted"], ack["earned"]) == (len(answers), earned)

    if 1 + len(answers) < 3:
        honest = await connect_worker(volunteer, cores=1)
        await complete_honestly(client, honest, remaining=3 - 1 - len(answers))
        await honest.disconnect()
    else:
        await receive_until(client, "complete")
    assert await stored_results(client, job_id) == [[n, n * 2] for n in range(1, 4)]
    await assert_paid(rogue, 1 + len(answers))  # the slices it did compute, once each
    await assert_ledger_whole()
    await disconnect(client, worker)


async def test_a_result_and_an_error_for_one_slice_in_one_batch_count_once(
    deployer, volunteer, rogue
):
    client = await connect_client(deployer)
    job_id = await deploy_range(client, deployer, end=2)
    liar = await connect_worker(rogue, cores=1)
    number = (await take_task(liar))["slices"][0]["slice"]
    error = {"slice": number, "name": "ValueError", "message": "both ways"}
    await send_results(liar, job_id, [(number, number * 2)], errors=[error])
    await liar.disconnect()

    honest = await connect_worker(volunteer, cores=1)
    await complete_honestly(client, honest, remaining=1)
    assert await stored_results(client, job_id) == [[1, 2], [2, 4]]
    job = await sync_to_async(Job.objects.get)(pk=job_id)
    assert (job.status, job.computed, job.total) == (JobStatus.FINISHED, 2, 2)
    assert job.paid == 2 * to_units(OFFER)  # two slices, paid once each, whoever computed them
    assert await sync_to_async(balance_of)(f"escrow:{job_id}") == 0
    await assert_ledger_whole()
    await disconnect(client, honest)


async def test_the_same_error_twice_in_one_batch_is_one_failure_not_two(deployer, volunteer, rogue):
    client = await connect_client(deployer)
    job_id = await deploy_range(client, deployer, end=1)
    liar = await connect_worker(rogue, cores=1)
    await take_task(liar)
    error = {"slice": 1, "name": "ValueError", "message": "once, said twice"}
    ack = await send_results(liar, job_id, [], errors=[error, error])
    assert ack["accepted"] == 0
    await liar.disconnect()

    # One failure gives the slice its one retry elsewhere; the job is not cancelled.
    job = await sync_to_async(Job.objects.get)(pk=job_id)
    assert job.status == JobStatus.RUNNING
    honest = await connect_worker(volunteer, cores=1)
    await complete_honestly(client, honest, remaining=1)
    await assert_paid(rogue, 0)
    await assert_paid(volunteer, 1)
    await disconnect(client, honest)


async def test_a_result_after_the_lease_lapsed_and_the_slice_moved_on_is_refused(
    deployer, volunteer, rogue
):
    client = await connect_client(deployer)
    job_id = await deploy_range(client, deployer, end=2)
    slow = await connect_worker(rogue, cores=2)
    task = await take_task(slow, capacity=2)
    await lapse_leases(job_id)
    await sync_to_async(services.requeue_lapsed_leases)()  # what the dispatch poller does

    # Slice 1 is computed by another worker first; slice 2 is back in the queue, untaken.
    honest = await connect_worker(volunteer, cores=1)
    assert (await answer(honest, await take_task(honest)))["accepted"] == 1
    late = await answer(slow, task)
    assert (late["accepted"], late["earned"]) == (0, "0")
    assert_rejected(await receive_until(client, "rejected"), [1, 2])

    await honest_finish(client, honest, job_id, remaining=1, total=2, rogue=rogue)
    await assert_paid(volunteer, 2)
    await disconnect(client, slow, honest)


async def test_a_result_after_the_lease_lapsed_is_refused_before_the_slice_is_requeued(
    deployer, volunteer, rogue
):
    client = await connect_client(deployer)
    job_id = await deploy_range(client, deployer, end=1)
    slow = await connect_worker(rogue, cores=1)
    task = await take_task(slow)
    await lapse_leases(job_id)

    late = await answer(slow, task)
    assert (late["accepted"], late["earned"]) == (0, "0")
    assert_rejected(await receive_until(client, "rejected"), [1])
    await slow.disconnect()
    honest = await connect_worker(volunteer, cores=1)
    await complete_honestly(client, honest, remaining=1)
    await assert_paid(rogue, 0)
    await assert_ledger_whole()
    await disconnect(client, honest)


async def test_a_worker_without_webgpu_gets_no_webgpu_work_and_cannot_claim_it(
    deployer, volunteer, rogue
):
    client = await connect_client(deployer)
    frame = deployer.deploy(input={"kind": "range", "start": 1, "end": 2}, offer=OFFER)
    frame["requirements"] = {"environment": {"webgpu": True}}
    job_id = await deploy(client, deployer, frame)
    liar = await connect_worker(rogue, cores=1)  # its hello claims no webgpu
    await liar.send_json_to({"type": "ready", "capacity": 1})
    assert (await liar.receive_json_from())["type"] == "waiting"

    ack = await send_results(liar, job_id, [(1, 2), (2, 4)])
    assert (ack["accepted"], ack["earned"]) == (0, "0")
    assert_rejected(await receive_until(client, "rejected"), [1, 2])

    honest = await connect_capable_worker(volunteer, {"webgpu": True})
    await complete_honestly(client, honest, remaining=2)
    await assert_paid(rogue, 0)
    await assert_paid(volunteer, 2)
    await assert_ledger_whole()
    await disconnect(client, liar, honest)


async def test_an_absurd_capacity_is_refused_and_a_large_one_hoards_nothing(deployer, rogue):
    client = await connect_client(deployer)
    await deploy_range(client, deployer, end=50)
    worker = await connect_worker(rogue, cores=1)
    for capacity in (-1, 10_001, "all"):
        await worker.send_json_to({"type": "ready", "id": "r", "capacity": capacity})
        assert (await receive_until(worker, "error"))["code"] == "EINVALID"
    # The most a worker may announce: its task is still sized by its cores, not its claim.
    task = await take_task(worker, capacity=10_000)
    assert len(task["slices"]) == 1
    await disconnect(client, worker)


async def test_a_worker_claiming_many_cores_cannot_lease_a_whole_job(deployer, volunteer, rogue):
    client = await connect_client(deployer)
    job_id = await deploy_range(client, deployer, end=600)
    hoarder = await connect_worker(rogue, cores=256)
    leased = []
    for _ in range(2):  # asking again and again, keeping every lease alive with progress
        leased += [s["slice"] for s in (await take_task(hoarder, capacity=10_000))["slices"]]
        await hoarder.send_json_to({"type": "progress", "job": job_id, "slices": leased})
    await hoarder.send_json_to({"type": "ready", "capacity": 10_000})
    assert (await hoarder.receive_json_from(timeout=10))["type"] == "waiting"
    # Two tasks of its claimed cores (256 each, until its speed is measured), no more.
    assert len(leased) == 512
    honest = await connect_worker(volunteer, cores=1)
    assert len((await take_task(honest))["slices"]) == 1  # the rest of the job is still there
    await disconnect(client, hoarder, honest)


async def test_results_for_a_missing_finished_or_cancelled_job_are_not_paid(
    deployer, volunteer, rogue
):
    client = await connect_client(deployer)
    liar = await connect_worker(rogue, cores=1)
    missing = await send_results(liar, "0" * 32, [(1, 2)])
    assert (missing["accepted"], missing["earned"]) == (0, "0")

    finished = await deploy_range(client, deployer, end=1)
    honest = await connect_worker(volunteer, cores=1)
    await complete_honestly(client, honest, remaining=1)
    after_the_end = await send_results(liar, finished, [(1, 2)])
    assert (after_the_end["accepted"], after_the_end["earned"]) == (0, "0")
    await honest.disconnect()

    cancelled = await deploy_range(client, deployer, end=1)
    await take_task(liar)
    await client.send_json_to({"type": "cancel", "id": "stop", "job": cancelled})
    await receive_until(client, "cancelled")
    after_cancel = await send_results(liar, cancelled, [(1, 2)])
    assert (after_cancel["accepted"], after_cancel["earned"]) == (0, "0")

    await assert_paid(rogue, 0)
    assert await sync_to_async(balance_of)(deployer.account) == to_units(10) - to_units(OFFER)
    await assert_ledger_whole()
    await disconnect(client, liar)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_a_number_json_cannot_carry_is_refused_not_stored(deployer, volunteer, rogue, number):
    client = await connect_client(deployer)
    job_id = await deploy_range(client, deployer, end=1)
    liar = await connect_worker(rogue, cores=1)
    await take_task(liar)
    results = f'[{{"slice": 1, "value": [{number}]}}]'
    await liar.send_to(
        text_data=f'{{"type": "result", "id": "odd", "job": "{job_id}", "results": {results}}}'
    )
    assert (await receive_until(liar, "error"))["code"] == "EINVALID"
    # The slice is back in the queue at once, for another worker, not after the lease.
    row = await sync_to_async(Slice.objects.get)(job_id=job_id, number=1)
    assert (row.status, row.worker, row.lost) == ("new", "", 0)
    await liar.disconnect()

    honest = await connect_worker(volunteer, cores=1)
    await complete_honestly(client, honest, remaining=1)
    assert await stored_results(client, job_id) == [[1, 2]]
    await assert_paid(rogue, 0)
    await assert_ledger_whole()
    await disconnect(client, honest)


async def test_text_no_database_stores_is_refused_not_stored(deployer, volunteer, rogue):
    # PostgreSQL's jsonb holds no NUL character and no lone surrogate: refused on every backend.
    client = await connect_client(deployer)
    job_id = await deploy_range(client, deployer, end=1)
    liar = await connect_worker(rogue, cores=1)
    await take_task(liar)
    for value in ('"a\\u0000b"', '"\\ud800"'):
        results = f'[{{"slice": 1, "value": {value}}}]'
        await liar.send_to(
            text_data=f'{{"type": "result", "id": "odd", "job": "{job_id}", "results": {results}}}'
        )
        refused = await receive_until(liar, "error")
        assert refused["code"] == "EINVALID" and "text" in refused["message"]
    await liar.disconnect()

    honest = await connect_worker(volunteer, cores=1)
    await complete_honestly(client, honest, remaining=1)
    assert await stored_results(client, job_id) == [[1, 2]]
    await assert_paid(rogue, 0)
    await disconnect(client, honest)


async def test_progress_alone_cannot_hold_a_slice_past_the_longest_a_slice_may_run(
    deployer, volunteer, rogue, settings
):
    settings.PROGRESS_RENEW_SECONDS = 0  # every progress frame renews (not once in 5 s)
    client = await connect_client(deployer)
    job_id = await deploy_range(client, deployer, end=1)
    stalling = await connect_worker(rogue, cores=1)
    await take_task(stalling)
    progress = {"type": "progress", "job": job_id, "slices": [1]}
    await lapse_leases(job_id)
    await stalling.send_json_to(progress)  # within MAX_SLICE_SECONDS: the lease runs on
    await send_results(stalling, job_id, [])  # answered once the progress was taken
    renewed = await sync_to_async(lambda: Slice.objects.get(job_id=job_id).lease_expires)()

    settings.MAX_SLICE_SECONDS = 0  # as if the slice had run that long already
    await lapse_leases(job_id)
    await stalling.send_json_to(progress)  # no longer renews anything
    await send_results(stalling, job_id, [])
    lapsed = await sync_to_async(lambda: Slice.objects.get(job_id=job_id).lease_expires)()
    assert renewed.year > 2000 and lapsed.year == 2000
    await sync_to_async(services.requeue_lapsed_leases)()  # what the dispatch poller does

    honest = await connect_worker(volunteer, cores=1)
    await complete_honestly(client, honest, remaining=1)
    await assert_paid(rogue, 0)
    await disconnect(client, stalling, honest)
