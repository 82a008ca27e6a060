"""The two websockets of docs/protocol.md: deploying clients and worker tabs.

Each handler parses (sockets.ProtocolConsumer did that), calls one service or selector, and
renders the reply as a dcp.protocol.messages model. What happened to a job reaches its
watchers through notify, which the services call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
import uuid
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from dcp.protocol import messages as wire
from dcp.protocol.credits import format_credits
from dcp.protocol.limits import CLOSE_UNAUTHENTICATED
from portal.store import auth as store_auth

from . import selectors, services, verification, worker_credentials
from .errors import SchedulerError
from .notify import WORKERS_GROUP, job_group, relay, token_workers_group, user_workers_group
from .sizing import TaskSizer, frame_budget
from .sockets import ProtocolConsumer

log = logging.getLogger(__name__)


def off_the_shared_thread(work: Any) -> Any:
    """Database work that may take long (storing a large deploy, reading a page of big
    results) runs in a thread of its own, not the one thread all sockets share for their
    short queries: one user's 300,000-value deploy does not hold up everyone's claims, acks
    and replies behind it."""
    return database_sync_to_async(work, thread_sensitive=False)


class ClientConsumer(ProtocolConsumer):
    """`/ws/client/`: authenticate an identity once, then deploy, watch, fetch and cancel."""

    requests = wire.client_requests

    async def connect(self) -> None:
        self.nonce = secrets.token_hex(32)
        self.identity: str | None = None
        self.user: Any = None
        self.jobs: set[str] = set()
        await self.accept()
        await self.send_message(wire.Challenge(nonce=self.nonce))

    async def disconnect(self, code: int) -> None:
        for job_id in self.jobs:
            await self.channel_layer.group_discard(job_group(job_id), self.channel_name)

    async def on_hello(self, request: wire.ClientHello, frame: dict[str, Any]) -> None:
        owner = await database_sync_to_async(services.open_session)(
            nonce=self.nonce, identity=request.identity, signature=request.signature
        )
        self.identity, self.user = owner.identity, owner.user
        reply = wire.ClientWelcome(
            id=request.id,
            identity=owner.identity,
            user=owner.user.email,
            first_dev=owner.user.is_first_dev,
        )
        await self.send_message(reply)

    def require_identity(self) -> str:
        if self.identity is None:
            raise SchedulerError("ENOTAUTHENTICATED", "say hello with a signed challenge first")
        return self.identity

    async def on_deploy(self, request: wire.Deploy, frame: dict[str, Any]) -> None:
        identity = self.require_identity()
        # The service makes this connection watch the job before the workers are woken, and
        # its status event follows this reply: `accepted` comes first.
        job = await off_the_shared_thread(services.deploy_signed)(
            owner=self.user,
            identity=identity,
            request=request,
            frame=frame,
            subscriber=self.channel_name,
        )
        self.jobs.add(job.id)
        await self.send_message(wire.Accepted(id=request.id, job=job.id, total=job.total))

    async def on_add_slices(self, request: wire.AddSlices, frame: dict[str, Any]) -> None:
        identity = self.require_identity()
        job = await off_the_shared_thread(services.add_slices_signed)(
            identity=identity, request=request, frame=frame
        )
        await self.send_message(wire.Added(id=request.id, job=job.id, total=job.total))

    async def on_escrow(self, request: wire.Escrow, frame: dict[str, Any]) -> None:
        identity = self.require_identity()
        job, held = await off_the_shared_thread(services.escrow_signed)(
            identity=identity, request=request, frame=frame
        )
        reply = wire.Escrowed(id=request.id, job=job.id, escrow=format_credits(held))
        await self.send_message(reply)

    async def on_close(self, request: wire.CloseJob, frame: dict[str, Any]) -> None:
        identity = self.require_identity()
        job, _ = await database_sync_to_async(services.close_job)(
            job_id=request.job, identity=identity
        )
        await self.send_message(wire.Closed(id=request.id, job=job.id, total=job.total))

    async def on_status(self, request: wire.StatusRequest, frame: dict[str, Any]) -> None:
        job = await self.own_job(request.job)
        status, info = await database_sync_to_async(_status_and_info)(job)
        reply = wire.StatusReply(id=request.id, job=job.id, status=status, info=info)
        await self.send_message(reply)

    async def on_jobs(self, request: wire.ListJobs, frame: dict[str, Any]) -> None:
        identity = self.require_identity()
        jobs = await database_sync_to_async(selectors.jobs_of_identity)(identity)
        await self.send_message(wire.JobsReply(id=request.id, jobs=jobs))

    async def watch(self, job_id: str) -> None:
        if job_id not in self.jobs:
            self.jobs.add(job_id)
            await self.channel_layer.group_add(job_group(job_id), self.channel_name)

    async def on_subscribe(self, request: wire.Subscribe, frame: dict[str, Any]) -> None:
        job = await self.own_job(request.job)
        await self.watch(job.id)
        status, info = await database_sync_to_async(_status_and_info)(job)
        await self.send_message(
            wire.Subscribed(id=request.id, job=job.id, status=status, info=info)
        )
        for event, data in selectors.final_events(job):
            await self.send_message(wire.Event(job=job.id, event=event, data=data))

    async def on_results(self, request: wire.FetchResults, frame: dict[str, Any]) -> None:
        job = await self.own_job(request.job)
        end = min(request.end, request.start + settings.MAX_RESULTS_PER_FETCH - 1)
        page = await off_the_shared_thread(selectors.results_page)(
            job, [(request.start, end)], limit=settings.MAX_RESULTS_PER_FETCH, budget=frame_budget()
        )
        following = page.next_ranges[0][0] if page.next_ranges else None
        # Rows straight from the database: [slice, value] pairs, trusted as they are.
        reply = wire.ResultsReply.model_construct(
            id=request.id, job=job.id, results=page.results, next=following
        )
        await self.send_message(reply)

    async def on_inputs(self, request: wire.FetchInputs, frame: dict[str, Any]) -> None:
        job = await self.own_job(request.job)
        end = min(request.end, request.start + settings.MAX_RESULTS_PER_FETCH - 1)
        values = await off_the_shared_thread(selectors.inputs_between)(
            job, request.start, end, budget=frame_budget()
        )
        reply = wire.InputsReply.model_construct(
            id=request.id, job=job.id, start=request.start, values=values
        )
        await self.send_message(reply)

    async def on_cancel(self, request: wire.Cancel, frame: dict[str, Any]) -> None:
        identity = self.require_identity()
        job = await database_sync_to_async(services.cancel_job)(
            job_id=request.job, identity=identity, reason=request.reason
        )
        await self.send_message(wire.Cancelled(id=request.id, job=job.id))

    async def own_job(self, job_id: str) -> Any:
        identity = self.require_identity()
        job = await database_sync_to_async(selectors.job_of_identity)(job_id, identity)
        if job is None:
            raise SchedulerError("ENOJOB", f"no job {job_id} for this identity")
        return job

    async def job_events(self, message: dict[str, Any]) -> None:
        """Several `job.event`s of notify sent as one: pass them on in order."""
        for event in message["events"]:
            await self.job_event(event)

    async def job_event(self, event: dict[str, Any]) -> None:
        """A `job.event` of notify: pass it on to this client."""
        message = wire.Event.model_construct(
            job=event["job"], event=event["event"], data=event["data"]
        )
        await self.send_message(message)


def _status_and_info(job: Any) -> tuple[wire.JobStatus, wire.JobInfo]:
    return wire.JobStatus(**selectors.job_status(job)), selectors.job_info(job)


class WorkerConsumer(ProtocolConsumer):
    """`/ws/worker/`: hand tasks to a worker and take its results. A worker works as its
    signed-in session's user, as its worker token's owner, or anonymously where allowed
    (worker_credentials.py): who it is, is settled by its first hello that is welcomed."""

    requests = wire.worker_requests

    async def connect(self) -> None:
        session_user = self.scope.get("user")
        signed_in = session_user is not None and session_user.is_authenticated
        self.session_user = session_user if signed_in else None
        self.user: Any = None  # who it works as, from its first welcomed hello
        self.groups_joined: list[str] = []
        self.worker_id = uuid.uuid4().hex[:20]
        self.sizer = TaskSizer()
        self.capacity = 0
        self.payee_address = ""
        self.batches = 0
        self.waiting = False
        self.dispatching = asyncio.Lock()
        self.jobs_seen: set[str] = set()
        self.progress: dict[str, set[int]] = {}  # slices said to progress, not renewed yet
        self.renewed: dict[str, float] = {}  # when each job's leases were last renewed
        self.capabilities = services.Capabilities()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        idle_workers.discard(self)
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        if self.user is not None:
            await database_sync_to_async(services.worker_disconnected)(worker=self.worker_id)

    async def on_hello(self, request: wire.WorkerHello, frame: dict[str, Any]) -> None:
        """Take the worker's cores, capabilities, compute groups, jobs and payment address; a hello
        refused (a wrong join secret, an unknown payment address) changes nothing: an earlier
        hello's still hold, and the socket stays. Credentials that do not hold close it."""
        if self.user is None:
            identity = await self.authenticate(request)
            if identity is None:
                return
        else:
            identity = self.identity
        address, capabilities = await database_sync_to_async(services.connect_worker)(
            worker=self.worker_id, user=identity.user, hello=request, anonymous=identity.anonymous
        )
        if self.user is None:
            await self.work_as(identity)
        self.payee_address, self.capabilities = address, capabilities
        self.sizer.cores = request.cores
        reply = wire.WorkerWelcome(
            id=request.id,
            worker=self.worker_id,
            address=address,
            compute_groups=list(dict.fromkeys(group.joinKey for group in request.compute_groups)),
            public_group=capabilities.public_group,
            jobs=list(dict.fromkeys(request.jobs)),
        )
        await self.send_message(reply)

    async def authenticate(
        self, request: wire.WorkerHello
    ) -> worker_credentials.WorkerIdentity | None:
        """Who the first hello says this worker is; None, said and closed, when no one."""
        try:
            return await database_sync_to_async(worker_credentials.authenticate_worker)(
                session_user=self.session_user, token=request.token
            )
        except SchedulerError as error:
            await self.send_error(request.id, error.code, error.message)
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return None

    async def work_as(self, identity: worker_credentials.WorkerIdentity) -> None:
        """Settle who this connection works as, and listen to what concerns them."""
        self.identity, self.user = identity, identity.user
        self.groups_joined = [WORKERS_GROUP, user_workers_group(identity.user.pk)]
        if identity.token_id is not None:
            self.groups_joined.append(token_workers_group(identity.token_id))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)

    async def worker_token_revoked(self, event: dict[str, Any]) -> None:
        """The worker token this connection said hello with was revoked: stop working."""
        await self.send_error(None, "ENOTAUTHENTICATED", "the worker token was revoked")
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def on_ready(self, request: wire.Ready, frame: dict[str, Any]) -> None:
        if not self.payee_address:
            raise SchedulerError("ENOTAUTHENTICATED", "say hello first")
        self.capacity = request.capacity
        suspended = await database_sync_to_async(verification.suspension)(self.user)
        if suspended:  # said now; the poller hands out work again once the suspension ends
            await self.send_error(request.id, "ESUSPENDED", suspended)
            await self.wait_for_work()
            return
        await self.offer_task()

    async def offer_task(self) -> None:
        """Send one task if this worker has room and there is work; else poll for it."""
        async with self.dispatching:
            if self.capacity <= 0:
                return
            task = await database_sync_to_async(services.claim_slices)(
                worker=self.worker_id,
                limit=settings.MAX_TASK_SLICES,
                size_of=self.sizer.task_size,
                capabilities=self.capabilities,
                user=self.user,
            )
            if task is None:
                await self.wait_for_work()
                return
            self.waiting = False
            idle_workers.discard(self)
            self.capacity = max(self.capacity - len(task.slices), 0)
            self.jobs_seen.add(task.job.id)
            ticket = store_auth.upload_ticket(
                worker=self.worker_id, user_id=self.user.pk, job_id=task.job.id
            )
            await self.send_message(task_message(task, upload_ticket=ticket))

    async def wait_for_work(self) -> None:
        """Say `waiting` once, and let the poller look for work for this worker."""
        if not self.waiting:
            self.waiting = True
            await self.send_message(wire.Waiting())
        idle_workers.add(self)

    async def work_available(self, event: dict[str, Any]) -> None:
        if self.capacity > 0:
            await self.offer_task()

    async def worker_suspended(self, event: dict[str, Any]) -> None:
        """This user's results lost too many votes: say so; no work comes until it ends."""
        await self.send_error(None, "ESUSPENDED", event["reason"])

    async def job_abort(self, event: dict[str, Any]) -> None:
        await self.send_message(wire.Abort(job=event["job"]))

    async def on_progress(self, request: wire.Progress, frame: dict[str, Any]) -> None:
        """Renew leases, at most once every PROGRESS_RENEW_SECONDS a job (the slices named
        meanwhile wait for the next renewal): a flood of progress frames costs the database
        nothing, so the connection's rate limit, not the database, sets the pace."""
        if request.job not in self.jobs_seen:
            return  # a worker may only speak for jobs it was given
        waiting = self.progress.setdefault(request.job, set())
        waiting.update(request.slices)  # at most 10,000 a frame (the protocol's schema)
        now = time.monotonic()
        if now - self.renewed.get(request.job, -math.inf) < settings.PROGRESS_RENEW_SECONDS:
            return
        self.renewed[request.job] = now
        numbers = sorted(self.progress.pop(request.job))
        await database_sync_to_async(services.extend_leases)(
            worker=self.worker_id, job_id=request.job, numbers=numbers
        )

    async def on_console(self, request: wire.Console, frame: dict[str, Any]) -> None:
        if request.job not in self.jobs_seen:
            return  # a worker may only speak for jobs it was given
        data = {"slice": request.slice, "level": request.level, "message": request.message}
        await relay(request.job, "console", data)

    async def on_result(self, request: wire.Results, frame: dict[str, Any]) -> None:
        if not self.payee_address:
            raise SchedulerError("ENOTAUTHENTICATED", "say hello first")
        self.batches += 1
        self.sizer.measured(request.job, (result.ms for result in request.results))
        outcome = await database_sync_to_async(services.record_results)(
            worker=self.worker_id,
            payee=self.user,
            payee_address=self.payee_address,
            job_id=request.job,
            results=[(r.slice, r.value) for r in request.results],
            errors=[e.model_dump() for e in request.errors],
            batch_key=f"pay:{request.job}:{self.worker_id}:{self.batches}",
            gpu_ms=_claims(request.results, "gpu_ms"),
            cpu_ms=_claims(request.results, "ms"),
            cores=self.sizer.cores,
        )
        ack = wire.Ack(id=request.id, accepted=outcome.kept, earned=format_credits(outcome.earned))
        await self.send_message(ack)

    async def refuse(self, text: str, request_id: Any, why: str) -> None:
        """A refused `result` frame stores nothing: the slices it answered, when they can be
        read from it, go back to the queue at once for another worker (not after the lease)."""
        await super().refuse(text, request_id, why)
        job_id, numbers = _answered_slices(text)
        if job_id and numbers and self.user is not None:
            await database_sync_to_async(services.return_slices)(
                worker=self.worker_id, job_id=job_id, numbers=numbers
            )

    async def on_return(self, request: wire.Return, frame: dict[str, Any]) -> None:
        await database_sync_to_async(services.return_slices)(
            worker=self.worker_id, job_id=request.job, numbers=request.slices
        )


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
                    await self.offer(worker)

    async def offer(self, worker: WorkerConsumer) -> None:
        """Offer one waiting worker work; one that cannot take it (its connection broke) is
        dropped, and the others are still served."""
        try:
            await worker.offer_task()
        except Exception:
            log.exception("dropping a waiting worker that could not be offered work")
            self.waiting.discard(worker)


idle_workers = IdleWorkers()


def _answered_slices(text: str) -> tuple[str | None, list[int]]:
    """The job and slice numbers a `result` frame answers, read leniently (NaN and the like
    are fine here: nothing of it is stored); (None, []) for anything else."""
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return None, []
    if not isinstance(frame, dict) or frame.get("type") != "result":
        return None, []
    job_id = frame.get("job")
    answers = [*_list(frame.get("results")), *_list(frame.get("errors"))]
    numbers = [a["slice"] for a in answers if isinstance(a, dict) and type(a.get("slice")) is int]
    return (job_id if isinstance(job_id, str) else None), numbers[:10_000]  # as `return` takes


def _claims(results: list[wire.SliceResult], field: str) -> dict[int, float]:
    """The milliseconds (`ms`: in the sandbox, `gpu_ms`: on the GPU) each slice's first result
    in a batch claims (a repeat is refused)."""
    claims: dict[int, float | None] = {}
    for result in results:
        claims.setdefault(result.slice, getattr(result, field))
    return {number: ms for number, ms in claims.items() if ms is not None}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def task_message(task: services.Task, *, upload_ticket: str = "") -> wire.Task:
    """The `task` frame of claimed slices, built without validating from the database's own
    rows: a task may carry thousands of slices, each a plain `TaskSlice`-shaped dict.
    `upload_ticket` lets the worker store the job's big results (portal/store/auth.py)."""
    job = task.job
    return wire.Task.model_construct(
        task=f"{job.id}:{task.slices[0][0]}",
        job=wire.TaskJob.model_construct(
            id=job.id,
            language=job.language,
            source=job.source,
            args=job.args,
            packages=job.requirements.get("packages", []),
            pyodide=job.requirements.get("pyodide", []),
            fs=job.requirements.get("fs"),
        ),
        slices=[{"slice": n, "datum": datum} for n, datum in task.slices],
        lease_seconds=services.lease_seconds(job),
        progress_timeout=job.progress_timeout,
        upload_ticket=upload_ticket,
    )
