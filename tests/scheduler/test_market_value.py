"""Jobs deployed at market value (the deploy's `market_value`): priced per measured CPU-second
at the market price times the multiplier; estimation slices first (status `estimation`, then
the `estimated` event with the estimate); only as many slices handed out as the escrow pays
for; `nofunds` and status `paused` when it is spent; an `escrow` request resumes the job; what
is left is refunded at the end, and not a base unit appears or vanishes. Driven over the client
and worker sockets, on SQLite and (with DATABASE_URL) PostgreSQL."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from dcp.client.cheques import escrow_payment
from portal.bank.models import LedgerAccount
from portal.scheduler.models import WorkerTally
from tests.scheduler.conftest import Deployer, connect_client, connect_worker, receive_until
from tests.scheduler.test_gpu_time import leased_since, next_task, status_reply
from tests.scheduler.test_min_wage import offered_a_task, worker_with_min_wage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

SLICES = 10
PRICE = "0.001"  # credits per CPU-second while no job was measured (the setting)
SLICE_MS = 100_000  # what each result claims: 100 CPU-seconds, 0.2 credits at twice the price


@pytest.fixture(autouse=True)
def market(settings: Any) -> None:
    settings.MARKET_CPU_SECOND_PRICE = PRICE
    settings.MARKET_ESTIMATION_SLICES = 3


async def deploy_at_market(
    client: Any, deployer: Deployer, budget: str, *, webgpu: bool = False
) -> str:
    values = list(range(SLICES))
    frame = deployer.deploy(
        input={"kind": "values", "values": values},
        offer="0",
        max_total=budget,
        market_value={"multiplier": 2},
    )
    if webgpu:  # not covered by the cheque: it changes nothing the escrow holds
        frame["requirements"] = {"environment": {"webgpu": True}}
    await client.send_json_to(frame)
    return str((await receive_until(client, "accepted"))["job"])


async def compute(
    worker: Any, job_id: str, capacity: int = 10, gpu_ms: float | None = None
) -> tuple[int, Decimal]:
    """One task answered, each result claiming SLICE_MS: (slices, credits earned). A task the
    scheduler sent on its own (work became available) is answered before asking for more."""
    task = STASHED.pop(id(worker), None)
    if task is None:
        task = await next_task(worker, capacity=capacity)
    await leased_since(job_id, 200)
    results = [{"slice": s["slice"], "value": 0, "ms": SLICE_MS} for s in task["slices"]]
    if gpu_ms is not None:
        results = [{**result, "gpu_ms": gpu_ms} for result in results]
    await worker.send_json_to({"type": "result", "id": 1, "job": job_id, "results": results})
    while (ack := await worker.receive_json_from(timeout=10))["type"] != "ack":
        if ack["type"] == "task":
            STASHED[id(worker)] = ack
    return len(results), Decimal(ack["earned"])


STASHED: dict[int, dict[str, Any]] = {}


async def escrow(client: Any, deployer: Deployer, job_id: str, credits: str) -> dict[str, Any]:
    ref = uuid.uuid4().hex
    payment = escrow_payment(
        account_key=deployer.account_key, job_id=job_id, ref=ref, amount=Decimal(credits)
    )
    await client.send_json_to(
        {"type": "escrow", "id": "e", "job": job_id, "ref": ref, "payment": payment}
    )
    while (frame := await client.receive_json_from(timeout=5))["type"] not in {"escrowed", "error"}:
        pass
    return frame


async def balance(address: str) -> Decimal:
    account = await sync_to_async(LedgerAccount.objects.get)(address=address)
    return Decimal(account.balance) / 10**9


async def test_a_market_value_job_estimates_pays_per_cpu_second_pauses_and_resumes(
    deployer: Deployer, volunteer: Any
) -> None:
    client = await connect_client(deployer)
    before = await balance(deployer.account)
    job_id = await deploy_at_market(client, deployer, budget="1")
    status = await status_reply(client, job_id)
    assert (status["status"], status["rate"]) == ("estimation", "0.002")
    worker = await connect_worker(volunteer, cores=4)

    slices, earned = await compute(worker, job_id)
    assert (slices, earned) == (3, Decimal("0.6"))  # the estimation slices alone, 0.2 each
    estimated = (await receive_until(client, "estimated"))["data"]
    assert estimated == {
        "cpuSecondsPerSlice": 100.0,
        "gpuSecondsPerSlice": 0.0,
        "rate": "0.002",
        "gpuRate": "0",  # it needs no GPU: a claim of GPU time is not paid
        "slices": 10,
        "cost": "2",
    }
    # 0.4 left: with each slice held counted at twice its mean cost, one slice is affordable.
    assert await compute(worker, job_id) == (1, Decimal("0.2"))
    nofunds = (await receive_until(client, "nofunds"))["data"]
    assert nofunds == {"escrow": "0.2", "slices": 6, "needed": "1.2"}
    assert (await status_reply(client, job_id))["status"] == "paused"
    another = await worker_with_min_wage(volunteer, "0")
    assert not await offered_a_task(another)
    await another.disconnect()

    topped = await escrow(client, deployer, job_id, "2")
    assert topped == {"type": "escrowed", "id": "e", "job": job_id, "escrow": "2.2"}
    computed = 4
    while computed < SLICES:
        computed += (await compute(worker, job_id))[0]
    await receive_until(client, "complete")

    paid = Decimal("0.2") * SLICES
    assert await balance(deployer.account) == before - paid  # the rest was refunded
    assert await balance(f"escrow:{job_id}") == 0
    await client.disconnect()
    await worker.disconnect()


async def test_market_value_deploys_and_escrow_requests_that_cannot_be_are_refused(
    deployer: Deployer,
) -> None:
    client = await connect_client(deployer)
    values = {"kind": "values", "values": [1, 2]}
    with_offer = deployer.deploy(input=values, offer="0.01", market_value={"multiplier": 1})
    verified = deployer.deploy(
        input=values, offer="0", market_value={"multiplier": 1}, verify={"quorum": 2}
    )
    no_budget = deployer.deploy(input=values, offer="0", max_total="0", market_value={})
    refusals = [
        (with_offer, "EINVALID"),
        (verified, "EINVALID"),
        (no_budget, "EBADPAYMENT"),
    ]
    for frame, code in refusals:
        await client.send_json_to(frame)
        assert (await receive_until(client, "error"))["code"] == code
    await client.send_json_to(deployer.deploy(input=values))  # 0.01 a slice
    per_slice = (await receive_until(client, "accepted"))["job"]
    refused = await escrow(client, deployer, per_slice, "1")
    assert (refused["code"], "pays per slice" in refused["message"]) == ("EINVALID", True)
    await client.disconnect()


async def test_a_market_value_job_reaches_workers_whose_minimum_wage_its_rate_meets(
    deployer: Deployer, volunteer: Any
) -> None:
    client = await connect_client(deployer)
    job_id = await deploy_at_market(client, deployer, budget="1")
    choosy = await worker_with_min_wage(volunteer, "0.0021")
    assert not await offered_a_task(choosy)
    await choosy.disconnect()
    content = await worker_with_min_wage(volunteer, "0.002")
    assert await offered_a_task(content)
    await content.disconnect()
    assert job_id
    await client.disconnect()


async def test_results_that_cost_more_than_the_escrow_holds_are_owed_and_paid_first(
    deployer: Deployer, volunteer: Any
) -> None:
    client = await connect_client(deployer)
    before = await balance(deployer.account)
    job_id = await deploy_at_market(client, deployer, budget="0.3")
    worker = await connect_worker(volunteer, cores=4)
    assert await compute(worker, job_id) == (3, Decimal("0.3"))  # cost 0.6: 0.3 owed
    nofunds = (await receive_until(client, "nofunds"))["data"]
    assert nofunds == {"escrow": "0", "slices": 7, "needed": "1.7"}  # the debt, then 7 x 0.2

    assert (await escrow(client, deployer, job_id, "2"))["escrow"] == "1.7"  # the debt paid
    computed = 3
    while computed < SLICES:
        computed += (await compute(worker, job_id))[0]
    await receive_until(client, "complete")
    tally = await sync_to_async(WorkerTally.objects.get)(user=volunteer)
    assert (tally.slices, Decimal(tally.earned) / 10**9) == (SLICES, Decimal("2"))
    assert await balance(deployer.account) == before - Decimal("2")
    await client.disconnect()
    await worker.disconnect()


@pytest.mark.parametrize(
    ("webgpu", "gpu_rate", "earned"), [(True, "0.02", "1.2"), (False, "0", "0.6")]
)
async def test_metered_gpu_time_of_a_gpu_job_is_paid_at_the_gpu_second_rate_beside_cpu_time(
    deployer: Deployer, volunteer: Any, webgpu: bool, gpu_rate: str, earned: str
) -> None:
    """100 CPU-seconds at 0.002 and 10 GPU-seconds at 0.02 a slice: 0.4 credits each on a job
    that needs a GPU; on another a claim of GPU time is not paid: 0.2 each."""
    client = await connect_client(deployer)
    job_id = await deploy_at_market(client, deployer, budget="5", webgpu=webgpu)
    assert (await status_reply(client, job_id))["gpuRate"] == gpu_rate
    worker = await connect_worker(volunteer, cores=4)
    await worker.send_json_to(
        {"type": "hello", "id": 2, "cores": 4, "capabilities": {"webgpu": True}}
    )
    await receive_until(worker, "welcome")
    assert await compute(worker, job_id, gpu_ms=10_000) == (3, Decimal(earned))
    await client.disconnect()
    await worker.disconnect()
