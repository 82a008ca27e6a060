"""The two websockets of docs/protocol.md: deploying clients and worker tabs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import uuid
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from eth_account import Account
from eth_account.messages import encode_defunct

from portal.bank.units import format_credits, to_units

from . import schemas, selectors, services
from .protocol import ProtocolConsumer
from .services import SchedulerError

log = logging.getLogger(__name__)
WORKERS_GROUP = "workers"
CLOSE_UNAUTHENTICATED = 4401


def job_group(job_id: str) -> str:
    return f"job.{job_id}"


def session_text(nonce: str) -> str:
    return f"DCP Portal client session\nnonce: {nonce}"


def payment_text(job_hash: str, max_total: str) -> str:
    return f"DCP Portal payment\njob: {job_hash}\nmax total: {max_total}"


def batch_payment_text(job_id: str, batch_ref: str, max_total: str) -> str:
    return f"DCP Portal payment\njob: {job_id}\nbatch: {batch_ref}\nmax total: {max_total}"


def job_hash(raw: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of what the payment authorises, as the client sent it."""
    fields = {
        "ref": raw.get("ref"),
        "work": raw.get("work"),
        "args": raw.get("args", []),
        "input": raw.get("input"),
        "slice_payment_offer": raw.get("slice_payment_offer"),
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def recover(text: str, signature: str) -> str | None:
    try:
        return str(Account.recover_message(encode_defunct(text=text), signature=signature))
    except Exception:  # a malformed signature of any kind is just a bad signature
        return None


class ClientConsumer(ProtocolConsumer):
    """`/ws/client/`: authenticate an identity once, then deploy, watch, fetch and cancel."""

    messages = schemas.client_messages

    async def connect(self) -> None:
        self.nonce = secrets.token_hex(32)
        self.identity: str | None = None
        self.user: Any = None
        self.jobs: set[str] = set()
        await self.accept()
        await self.send_json(
            {"type": "challenge", "version": schemas.PROTOCOL_VERSION, "nonce": self.nonce}
        )

    async def disconnect(self, code: int) -> None:
        for job_id in self.jobs:
            await self.channel_layer.group_discard(job_group(job_id), self.channel_name)

    async def on_hello(self, message: schemas.ClientHello, raw: dict[str, Any]) -> None:
        signer = recover(session_text(self.nonce), message.signature)
        if signer is None or signer.lower() != message.identity.lower():
            raise SchedulerError("EBADSIG", "the signature does not match this session's challenge")
        owner = await database_sync_to_async(selectors.identity_owner)(signer)
        if owner is None:
            raise SchedulerError(
                "ENOIDENTITY", "identity not registered: create one on the First Devs tab"
            )
        self.identity, self.user = signer, owner
        await self.send_json(
            {
                "type": "welcome",
                "id": message.id,
                "identity": signer,
                "user": owner.email,
                "first_dev": owner.is_first_dev,
            }
        )

    def require_identity(self) -> str:
        if self.identity is None:
            raise SchedulerError("ENOTAUTHENTICATED", "say hello with a signed challenge first")
        return self.identity

    async def on_deploy(self, message: schemas.Deploy, raw: dict[str, Any]) -> None:
        identity = self.require_identity()
        payer = self.verify_payment(message, raw)
        spec = _job_spec(message)
        total = services.slice_count(spec)
        if message.payment.max_total < message.slice_payment_offer * total:
            raise SchedulerError(
                "EBADPAYMENT",
                f"the payment authorises {message.payment.max_total} credits but "
                f"{total} slices at {message.slice_payment_offer} cost "
                f"{message.slice_payment_offer * total}",
            )
        job, _ = await database_sync_to_async(services.deploy_job)(
            owner=self.user, identity=identity, payer=payer, spec=spec
        )
        await self.watch(job.id)
        # Wake the workers first: they claim while this client reads its reply.
        await self.channel_layer.group_send(WORKERS_GROUP, {"type": "work.available"})
        await self.send_json(
            {"type": "accepted", "id": message.id, "job": job.id, "total": job.total}
        )
        await self.send_status(job)

    async def send_status(self, job: Any) -> None:
        if services.has_requirements(job):  # only then does the status need a query
            status = await database_sync_to_async(services.job_status)(job)
        else:
            status = services.job_status(job)
        await self.send_json({"type": "event", "job": job.id, "event": "status", "data": status})

    async def on_add_slices(self, message: schemas.AddSlices, raw: dict[str, Any]) -> None:
        identity = self.require_identity()
        text = batch_payment_text(message.job, message.ref, str(raw["payment"]["max_total"]))
        payer = recover(text, message.payment.signature)
        if payer is None:
            raise SchedulerError("EBADPAYMENT", "the batch's payment authorisation does not verify")
        job, added = await database_sync_to_async(services.add_slices)(
            job_id=message.job,
            identity=identity,
            batch_ref=message.ref,
            values=message.values,
            payer=payer,
            max_total=to_units(message.payment.max_total),
        )
        await self.send_json({"type": "added", "id": message.id, "job": job.id, "total": job.total})
        if added:
            await self.channel_layer.group_send(WORKERS_GROUP, {"type": "work.available"})
            await publish_status(self.channel_layer, job)

    async def on_close(self, message: schemas.CloseJob, raw: dict[str, Any]) -> None:
        identity = self.require_identity()
        job, completed = await database_sync_to_async(services.close_job)(
            job_id=message.job, identity=identity
        )
        await self.send_json(
            {"type": "closed", "id": message.id, "job": job.id, "total": job.total}
        )
        if completed:
            await emit(self.channel_layer, job.id, "complete", {"total": job.total})

    async def on_status(self, message: schemas.JobStatusRequest, raw: dict[str, Any]) -> None:
        job = await self.own_job(message.job)
        status = await database_sync_to_async(services.job_status)(job)
        await self.send_json({"type": "status", "id": message.id, "job": job.id, "status": status})

    async def on_jobs(self, message: schemas.ListJobs, raw: dict[str, Any]) -> None:
        identity = self.require_identity()
        jobs = await database_sync_to_async(selectors.jobs_of_identity)(identity)
        await self.send_json({"type": "jobs", "id": message.id, "jobs": jobs})

    def verify_payment(self, message: schemas.Deploy, raw: dict[str, Any]) -> str:
        text = payment_text(job_hash(raw), str(raw["payment"]["max_total"]))
        signer = recover(text, message.payment.signature)
        if signer is None or signer.lower() != message.payment.account.lower():
            raise SchedulerError(
                "EBADPAYMENT", "the payment authorisation is not signed by the paying account"
            )
        return signer

    async def watch(self, job_id: str) -> None:
        if job_id not in self.jobs:
            self.jobs.add(job_id)
            await self.channel_layer.group_add(job_group(job_id), self.channel_name)

    async def on_subscribe(self, message: schemas.Subscribe, raw: dict[str, Any]) -> None:
        job = await self.own_job(message.job)
        await self.watch(job.id)
        status = await database_sync_to_async(services.job_status)(job)
        await self.send_json(
            {"type": "subscribed", "id": message.id, "job": job.id, "status": status}
        )
        for event, data in selectors.final_events(job):
            await self.send_json({"type": "event", "job": job.id, "event": event, "data": data})

    async def on_results(self, message: schemas.FetchResults, raw: dict[str, Any]) -> None:
        job = await self.own_job(message.job)
        end = min(message.end, message.start + settings.MAX_RESULTS_PER_FETCH - 1)
        rows = await database_sync_to_async(selectors.results_between)(job, message.start, end)
        await self.send_json({"type": "results", "id": message.id, "job": job.id, "results": rows})

    async def on_cancel(self, message: schemas.Cancel, raw: dict[str, Any]) -> None:
        identity = self.require_identity()
        job = await database_sync_to_async(services.cancel_job)(
            job_id=message.job, identity=identity, reason=message.reason
        )
        await self.send_json({"type": "cancelled", "id": message.id, "job": job.id})
        await announce_cancel(self.channel_layer, job.id, job.cancel_code, job.cancel_reason)

    async def own_job(self, job_id: str) -> Any:
        identity = self.require_identity()
        job = await database_sync_to_async(selectors.job_of_identity)(job_id, identity)
        if job is None:
            raise SchedulerError("ENOJOB", f"no job {job_id} for this identity")
        return job

    async def job_event(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {"type": "event", "job": event["job"], "event": event["event"], "data": event["data"]}
        )


async def emit(layer: Any, job_id: str, event: str, data: Any) -> None:
    """Send one event to every client watching the job, in whichever process it is."""
    message = {"type": "job.event", "job": job_id, "event": event, "data": data}
    await layer.group_send(job_group(job_id), message)


async def publish_status(layer: Any, job: Any) -> None:
    await emit(layer, job.id, "status", await database_sync_to_async(services.job_status)(job))


async def announce_cancel(layer: Any, job_id: str, code: str, reason: str) -> None:
    await emit(layer, job_id, "cancel", {"code": code, "reason": reason})
    await layer.group_send(WORKERS_GROUP, {"type": "job.abort", "job": job_id})


def _job_spec(message: schemas.Deploy) -> services.JobSpec:
    spec = services.JobSpec(
        ref=message.ref,
        language=message.work.language,
        source=message.work.source,
        args=message.args,
        input_kind=message.input.kind,
        is_open=message.open,
        offer=to_units(message.slice_payment_offer),
        public=message.public.model_dump(exclude_defaults=True),
        requirements=message.requirements.model_dump(exclude_defaults=True),
        progress_timeout=message.progress_timeout,
    )
    if isinstance(message.input, schemas.ValuesInput):
        spec.values = message.input.values
    else:
        spec.input_spec = message.input.model_dump(exclude={"kind"})
    return spec


class WorkerConsumer(ProtocolConsumer):
    """`/ws/worker/`: hand tasks to a signed-in user's worker tab and take its results."""

    messages = schemas.worker_messages

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        await self.accept()
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.worker_id = uuid.uuid4().hex[:20]
        self.cores = 1
        self.capacity = 0
        self.payee_address = ""
        self.slice_ms: float | None = None
        self.batches = 0
        self.waiting = False
        self.dispatching = asyncio.Lock()
        self.jobs_seen: set[str] = set()
        self.capabilities = services.Capabilities()  # console lines are forwarded only for these
        await self.channel_layer.group_add(WORKERS_GROUP, self.channel_name)

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "worker_id"):
            return
        idle_workers.discard(self)
        await self.channel_layer.group_discard(WORKERS_GROUP, self.channel_name)
        returned = await database_sync_to_async(services.worker_disconnected)(worker=self.worker_id)
        if returned:
            await self.channel_layer.group_send(WORKERS_GROUP, {"type": "work.available"})

    async def on_hello(self, message: schemas.WorkerHello, raw: dict[str, Any]) -> None:
        self.cores = message.cores
        self.capabilities = services.Capabilities(
            webgpu=message.capabilities.get("webgpu") is True,
            offscreen_canvas=message.capabilities.get("offscreenCanvas") is True,
        )
        self.payee_address = await database_sync_to_async(selectors.payee_address)(self.user)
        await database_sync_to_async(services.worker_connected)(
            worker=self.worker_id, user=self.user, cores=self.cores, capabilities=self.capabilities
        )
        await self.send_json(
            {
                "type": "welcome",
                "id": message.id,
                "worker": self.worker_id,
                "address": self.payee_address,
            }
        )

    async def on_ready(self, message: schemas.Ready, raw: dict[str, Any]) -> None:
        if not self.payee_address:
            raise SchedulerError("ENOTAUTHENTICATED", "say hello first")
        self.capacity = message.capacity
        await self.offer_task()

    async def offer_task(self) -> None:
        """Send one task if this worker has room and there is work; else poll for it."""
        async with self.dispatching:
            if self.capacity <= 0:
                return
            task = await database_sync_to_async(services.claim_slices)(
                worker=self.worker_id, limit=self.task_size(), capabilities=self.capabilities
            )
            if task is None:
                if not self.waiting:
                    self.waiting = True
                    await self.send_json({"type": "waiting"})
                idle_workers.add(self)
                return
            self.waiting = False
            idle_workers.discard(self)
            self.capacity = max(self.capacity - len(task.slices), 0)
            self.jobs_seen.add(task.job.id)
            await self.send_json(_task_message(task))

    def task_size(self) -> int:
        if not self.slice_ms:
            return self.cores
        per_second = self.cores * 1000 / max(self.slice_ms, 0.05)
        return max(1, min(int(per_second), settings.MAX_TASK_SLICES))

    async def work_available(self, event: dict[str, Any]) -> None:
        if self.capacity > 0:
            await self.offer_task()

    async def job_abort(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "abort", "job": event["job"]})

    async def on_progress(self, message: schemas.Progress, raw: dict[str, Any]) -> None:
        await database_sync_to_async(services.extend_leases)(
            worker=self.worker_id, job_id=message.job, numbers=message.slices
        )

    async def on_console(self, message: schemas.Console, raw: dict[str, Any]) -> None:
        if message.job not in self.jobs_seen:
            return  # a worker may only speak for jobs it was given
        data = {"slice": message.slice, "level": message.level, "message": message.message}
        await self.channel_layer.group_send(
            job_group(message.job),
            {"type": "job.event", "job": message.job, "event": "console", "data": data},
        )

    async def on_result(self, message: schemas.Results, raw: dict[str, Any]) -> None:
        self.batches += 1
        timings = [r.ms for r in message.results if r.ms is not None]
        if timings:
            mean = sum(timings) / len(timings)
            self.slice_ms = mean if self.slice_ms is None else 0.7 * self.slice_ms + 0.3 * mean
        outcome = await database_sync_to_async(services.record_results)(
            worker=self.worker_id,
            payee=self.user,
            payee_address=self.payee_address,
            job_id=message.job,
            results=[(r.slice, r.value) for r in message.results],
            errors=[e.model_dump() for e in message.errors],
            batch_key=f"pay:{message.job}:{self.worker_id}:{self.batches}",
        )
        await self.send_json(
            {
                "type": "ack",
                "id": message.id,
                "accepted": len(outcome.accepted),
                "earned": format_credits(outcome.earned),
            }
        )
        await publish_outcome(self.channel_layer, outcome)

    async def on_return(self, message: schemas.Return, raw: dict[str, Any]) -> None:
        returned = await database_sync_to_async(services.return_slices)(
            worker=self.worker_id, job_id=message.job, numbers=message.slices
        )
        if returned:
            await self.channel_layer.group_send(WORKERS_GROUP, {"type": "work.available"})


class IdleWorkers:
    """The waiting workers of this process and the one poller that looks for work for them.

    Wake-ups through the channel layer are the fast path; this is the fallback for a wake-up
    that was lost (another process crashed, a lapsed lease). One query per poll, however many
    workers wait, so thousands of idle tabs cost next to nothing.
    """

    def __init__(self) -> None:
        self.waiting: set[WorkerConsumer] = set()
        self.poller: asyncio.Task[None] | None = None

    def add(self, worker: WorkerConsumer) -> None:
        self.waiting.add(worker)
        loop = asyncio.get_running_loop()
        if self.poller is None or self.poller.done() or self.poller.get_loop() is not loop:
            self.poller = loop.create_task(self.poll())

    def discard(self, worker: WorkerConsumer) -> None:
        self.waiting.discard(worker)

    async def poll(self) -> None:
        while self.waiting:
            await asyncio.sleep(settings.DISPATCH_POLL_SECONDS)
            await database_sync_to_async(services.requeue_lapsed_leases)()
            if await database_sync_to_async(services.any_work)():
                for worker in list(self.waiting):
                    await worker.offer_task()


idle_workers = IdleWorkers()


def _task_message(task: services.Task) -> dict[str, Any]:
    job = task.job
    return {
        "type": "task",
        "task": f"{job.id}:{task.slices[0][0]}",
        "job": {"id": job.id, "language": job.language, "source": job.source, "args": job.args},
        "slices": [{"slice": n, "datum": datum} for n, datum in task.slices],
        "lease_seconds": services.lease_seconds(job),
        "progress_timeout": job.progress_timeout,
    }


async def publish_outcome(layer: Any, outcome: services.BatchOutcome) -> None:
    """Send one batch's events to the job's group: results, errors, status, the end."""
    job_id = outcome.job_id
    if outcome.accepted:
        results = [{"slice": n, "value": v} for n, v in outcome.accepted]
        await emit(layer, job_id, "result", results)
    for error in outcome.errors:
        await emit(layer, job_id, "error", error)
    for stalled in outcome.noprogress:
        await emit(layer, job_id, "noprogress", stalled)
    if outcome.status is not None:
        await emit(layer, job_id, "status", outcome.status)
    if outcome.completed:
        await emit(
            layer, job_id, "complete", {"total": outcome.status["total"] if outcome.status else 0}
        )
    if outcome.cancelled:
        await announce_cancel(layer, job_id, *outcome.cancelled)
