"""A fake scheduler speaking the client side of docs/protocol.md, for exec() tests.

It runs a `websockets` asyncio server on 127.0.0.1 in a background thread, checks the hello,
deploy and batch cheques as the real one must, with the protocol's own texts and job hash
(dcp.protocol.signed; a job that asks for verification pays for `quorum` results a slice),
expands inputs with the protocol's input arithmetic (dcp.protocol.inputs)
and builds its replies from the protocol's models, and plays a script: by default it accepts
the job, sends status, console and result events, then `complete`, and answers `results`
pages with `datum * 2` (or, with `evaluate = True`, with the work function's real result).
Open jobs take `add_slices` until `close`; `status`, `jobs`, `inputs` and `cancel` work from any
connection, and events go to every connection subscribed to the job. `subscribed` and `status`
carry the job's `info` (set `describe_jobs = False` to play a scheduler that does not). Tests
change the script by overriding `play` (or setting attributes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
from decimal import Decimal
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from dcp.protocol import messages as m
from dcp.protocol.inputs import span_of
from dcp.protocol.limits import PROTOCOL_VERSION
from dcp.protocol.signed import (
    batch_cheque_text,
    cheque_text,
    deploy_hash,
    recover_signer,
    session_text,
)
from dcp.protocol.verify import replicas
from dcp.runtime.slice import SliceRuntime

Frame = dict[str, Any]
batch_text = batch_cheque_text  # the name the tests use


def recover(text: str, signature: str) -> str | None:
    """The address that signed `text` (EIP-191 personal message)."""
    return recover_signer(text, signature)


def slice_data(spec: Frame) -> list[Any]:
    """Every slice's datum, as the scheduler expands the input."""
    if spec["kind"] == "values":
        return list(spec["values"])
    expand = span_of(spec["kind"], {k: v for k, v in spec.items() if k != "kind"})
    return [expand.datum(n) for n in range(1, expand.slices + 1)]


class _Unheard:
    """A slice runtime host that drops progress and console lines."""

    def report_progress(self, value: float | None) -> None:
        pass

    def console(self, level: str, message: str) -> None:
        pass


def run_work(source: str, args: list[Any], datum: Any) -> Any:
    """What a worker would compute: the work function's source run on `datum` by the slice
    runtime every worker uses."""
    reply = SliceRuntime(source, args, _Unheard()).run(1, datum)
    assert isinstance(reply, dict), "the fake scheduler runs synchronous work functions only"
    if reply["type"] != "result":
        raise RuntimeError(f"{reply['name']}: {reply['message']}")
    return reply["value"]


class FakeJob:
    """What the fake knows of a deployed job."""

    def __init__(self, job_id: str, deploy: Frame, evaluate: bool = False) -> None:
        self.id = job_id
        self.deploy = deploy
        self.evaluate = evaluate
        self.data = slice_data(deploy["input"])
        self.total = len(self.data)
        self.results = {n: self.compute(datum) for n, datum in enumerate(self.data, 1)}
        self.open = bool(deploy.get("open"))
        self.batches: dict[str, int] = {}  # batch ref -> its first slice
        self.status = "running"
        self.computed = 0  # slices whose results were announced
        self.cancel = ("", "")

    @property
    def replicas(self) -> int:
        """The results of each slice the escrow pays for: the quorum, when verified."""
        return replicas(self.deploy.get("verify"))

    def compute(self, datum: Any) -> Any:
        if self.evaluate:
            work = self.deploy["work"]
            return run_work(work["source"], self.deploy["args"], datum)
        return datum * 2

    def add(self, values: list[Any]) -> int:
        first = self.total + 1
        for number, datum in enumerate(values, first):
            self.data.append(datum)
            self.results[number] = self.compute(datum)
        self.total += len(values)
        return first

    def info(self) -> m.JobInfo:
        """What the job is, as `subscribed` and `status` describe it to an attached handle."""
        form = self.deploy["input"]
        return m.JobInfo(
            work=m.Work.model_validate(self.deploy["work"]),
            args=self.deploy.get("args", []),
            input={"kind": "values"} if form["kind"] == "values" else form,
            slice_payment_offer=self.deploy["slice_payment_offer"],
            open=self.open,
        )

    def status_frame(self, computed: int | None = None) -> Frame:
        if computed is None:
            computed = self.total if self.status == "finished" else self.computed
        status = {
            "total": self.total,
            "distributed": self.total,
            "computed": computed,
            "failed": 0,
            "status": self.status,
            "open": self.open,
        }
        if self.deploy.get("verify"):
            status["verification"] = {
                "quorum": self.replicas,
                "pending": 0,
                "disputed": 0,
                "rejected": 0,
            }
        return status


class FakeScheduler:
    """A scripted scheduler on 127.0.0.1:<free port>; `url` is its http:// address."""

    def __init__(self) -> None:
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: Server | None = None
        self.connections = 0
        self.frames: list[Frame] = []  # every request received, in order
        self.jobs: dict[str, FakeJob] = {}  # by ref
        self.subscribers: dict[str, set[ServerConnection]] = {}
        self.hello_error: tuple[str, str] | None = None
        self.deploy_error: tuple[str, str] | None = None
        self.result_batch = 3
        self.drop_result_events = False  # events are best-effort: the client must fetch
        self.evaluate = False  # compute real results by running the work function
        self.describe_jobs = True  # `subscribed` and `status` carry the job's info
        self.inputs_page = 10_000  # the most values one `inputs` reply carries
        # A fast worker: the job's events all come before the deploy's `accepted` reply.
        self.events_before_accepted = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            assert self.server is not None
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def requests(self, kind: str) -> list[Frame]:
        """The requests of one type received so far."""
        return [frame for frame in self.frames if frame.get("type") == kind]

    def call(self, coroutine: Any) -> Any:
        """Run a coroutine on the fake's loop from a test's thread (e.g. to send an event)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    async def _serve(self) -> Server:
        return await serve(self._handle, "127.0.0.1", 0)

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        connection = self.connections
        with contextlib.suppress(ConnectionClosed):
            if not await self._authenticate(ws):
                return
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                frame = json.loads(message)
                self.frames.append(frame)
                await self.on_request(ws, frame, connection)
        for watchers in self.subscribers.values():
            watchers.discard(ws)

    async def _authenticate(self, ws: ServerConnection) -> bool:
        nonce = secrets.token_hex(32)
        await reply(ws, m.Challenge(version=PROTOCOL_VERSION, nonce=nonce))
        hello = json.loads(await ws.recv())
        self.frames.append(hello)
        m.ClientHello.model_validate(hello)  # the client speaks the protocol
        signer = recover(session_text(nonce), hello["signature"])
        if signer != hello["identity"]:
            await reply(ws, m.Error(id=hello["id"], code="EBADSIG", message="bad signature"))
            return False
        if self.hello_error is not None:
            code, message = self.hello_error
            await reply(ws, m.Error(id=hello["id"], code=code, message=message))
            return False
        welcome = m.ClientWelcome(
            id=hello["id"], identity=signer, user="ada@example.com", first_dev=True
        )
        await reply(ws, welcome)
        return True

    async def on_request(self, ws: ServerConnection, frame: Frame, connection: int) -> None:
        m.client_requests.validate_python(frame)  # the client speaks the protocol
        kind = frame["type"]
        if kind == "deploy":
            await self.on_deploy(ws, frame, connection)
            return
        if kind == "jobs":
            listed = [self.listing(job) for job in reversed(self.jobs.values())]
            await reply(ws, m.JobsReply(id=frame["id"], jobs=listed))
            return
        job = self.find(frame.get("job", ""))
        if job is None:
            await reply(ws, m.Error(id=frame["id"], code="ENOJOB", message="no such job"))
            return
        await self.handlers[kind](ws, job, frame)

    @property
    def handlers(self) -> dict[str, Any]:
        """The requests about one job, by type."""
        return {
            "subscribe": self.on_subscribe,
            "status": self.on_status,
            "results": self.on_results,
            "inputs": self.on_inputs,
            "add_slices": self.on_add_slices,
            "close": self.on_close,
            "cancel": self.on_cancel,
            "escrow": self.on_escrow,
        }

    def info_of(self, job: FakeJob) -> m.JobInfo | None:
        return job.info() if self.describe_jobs else None

    async def on_subscribe(self, ws: ServerConnection, job: FakeJob, frame: Frame) -> None:
        self.subscribers.setdefault(job.id, set()).add(ws)
        status = m.JobStatus.model_validate(job.status_frame())
        subscribed = m.Subscribed(id=frame["id"], job=job.id, status=status, info=self.info_of(job))
        await reply(ws, subscribed)

    async def on_status(self, ws: ServerConnection, job: FakeJob, frame: Frame) -> None:
        status = m.JobStatus.model_validate(job.status_frame())
        await reply(
            ws, m.StatusReply(id=frame["id"], job=job.id, status=status, info=self.info_of(job))
        )

    async def on_results(self, ws: ServerConnection, job: FakeJob, frame: Frame) -> None:
        numbers = range(frame["start"], frame["end"] + 1)
        rows = [(n, job.results[n]) for n in numbers if n in job.results]
        await reply(ws, m.ResultsReply(id=frame["id"], job=job.id, results=rows))

    async def on_inputs(self, ws: ServerConnection, job: FakeJob, frame: Frame) -> None:
        start = frame["start"]
        end = min(frame["end"], start + self.inputs_page - 1, job.total)
        values = job.data[start - 1 : end]
        await reply(ws, m.InputsReply(id=frame["id"], job=job.id, start=start, values=values))

    async def on_escrow(self, ws: ServerConnection, job: FakeJob, frame: Frame) -> None:
        """What the escrow holds now: only what this request added (the fake has no budget)."""
        held = frame["payment"]["max_total"]
        await reply(ws, m.Escrowed(id=frame["id"], job=job.id, escrow=held))

    async def on_cancel(self, ws: ServerConnection, job: FakeJob, frame: Frame) -> None:
        await reply(ws, m.Cancelled(id=frame["id"], job=job.id))
        if job.status == "running":
            reason = frame.get("reason") or "cancelled by its owner"
            await self.end(job, "cancelled", ("ECANCELLED", reason))

    async def on_deploy(self, ws: ServerConnection, frame: Frame, connection: int) -> None:
        problem = check_cheque(frame)
        if problem is not None:
            await reply(ws, m.Error(id=frame["id"], code="EBADPAYMENT", message=problem))
            return
        if self.deploy_error is not None:
            code, message = self.deploy_error
            await reply(ws, m.Error(id=frame["id"], code=code, message=message))
            return
        job = self.jobs.get(frame["ref"])
        redeploy = job is not None
        if job is None:
            job_id = f"job-{len(self.jobs) + 1}"
            job = self.jobs[frame["ref"]] = FakeJob(job_id, frame, self.evaluate)
        self.subscribers.setdefault(job.id, set()).add(ws)
        accepted = m.Accepted(id=frame["id"], job=job.id, total=job.total)
        if self.events_before_accepted:
            await self.play(ws, job, connection, redeploy)
            await reply(ws, accepted)
            return
        await reply(ws, accepted)
        await self.play(ws, job, connection, redeploy)

    async def play(
        self, ws: ServerConnection, job: FakeJob, connection: int, redeploy: bool
    ) -> None:
        """The job's life as events: status, a console line, result batches, complete.

        An open job gets the results of the slices it has, and completes on close."""
        await event(ws, job, "status", job.status_frame(computed=0))
        await event(ws, job, "console", {"slice": 1, "level": "log", "message": "hello"})
        numbers = sorted(job.results, reverse=True)  # out of order on purpose
        for start in range(0, len(numbers), self.result_batch):
            chunk = numbers[start : start + self.result_batch]
            if not self.drop_result_events:
                results = [{"slice": n, "value": job.results[n]} for n in chunk]
                await event(ws, job, "result", results)
        job.computed = job.total
        if not job.open:
            job.status = "finished"
            await event(ws, job, "status", job.status_frame())
            await event(ws, job, "complete", {"total": job.total})

    async def on_add_slices(self, ws: ServerConnection, job: FakeJob, frame: Frame) -> None:
        problem = check_batch_cheque(job, frame)
        if problem is not None:
            await reply(ws, m.Error(id=frame["id"], code="EBADPAYMENT", message=problem))
            return
        if frame["ref"] in job.batches:
            await reply(ws, m.Added(id=frame["id"], job=job.id, total=job.total))
            return
        if not job.open or job.status != "running":
            await reply(ws, m.Error(id=frame["id"], code="ECLOSED", message="job is closed"))
            return
        first = job.batches[frame["ref"]] = job.add(frame["values"])
        await reply(ws, m.Added(id=frame["id"], job=job.id, total=job.total))
        await self.on_added(job, first, len(frame["values"]))

    async def on_added(self, job: FakeJob, first: int, count: int) -> None:
        """New slices were added: by default they are computed at once."""
        numbers = range(first, first + count)
        job.computed += count
        await self.broadcast(
            job, "result", [{"slice": n, "value": job.results[n]} for n in numbers]
        )
        await self.broadcast(job, "status", job.status_frame())

    async def on_close(self, ws: ServerConnection, job: FakeJob, frame: Frame) -> None:
        was_open, job.open = job.open, False
        await reply(ws, m.Closed(id=frame["id"], job=job.id, total=job.total))
        if was_open and job.status == "running":
            await self.end(job, "finished")

    async def end(self, job: FakeJob, status: str, cancel: tuple[str, str] | None = None) -> None:
        """Finish or cancel the job and tell its subscribers."""
        job.status = status
        await self.broadcast(job, "status", job.status_frame())
        if cancel is None:
            await self.broadcast(job, "complete", {"total": job.total})
        else:
            job.cancel = cancel
            await self.broadcast(job, "cancel", {"code": cancel[0], "reason": cancel[1]})

    async def broadcast(self, job: FakeJob, name: str, data: Any) -> None:
        for ws in list(self.subscribers.get(job.id, ())):
            with contextlib.suppress(ConnectionClosed):
                await event(ws, job, name, data)

    def find(self, job_id: str) -> FakeJob | None:
        return next((job for job in self.jobs.values() if job.id == job_id), None)

    def job_by_id(self, job_id: str) -> FakeJob:
        job = self.find(job_id)
        assert job is not None
        return job

    def listing(self, job: FakeJob) -> Frame:
        return {
            "job": job.id,
            "name": job.deploy.get("public", {}).get("name", ""),
            "status": job.status,
            "total": job.total,
            "computed": job.total,
            "created": "2026-01-01T00:00:00+00:00",
        }


def check_cheque(deploy: Frame) -> str | None:
    """Why the deploy's payment does not verify, or None when it does."""
    payment = deploy["payment"]
    text = cheque_text(deploy_hash(deploy), payment["max_total"])
    if recover(text, payment["signature"]) != payment["account"]:
        return "the cheque does not verify"
    total = len(slice_data(deploy["input"])) * replicas(deploy.get("verify"))
    if Decimal(payment["max_total"]) < Decimal(deploy["slice_payment_offer"]) * total:
        return "max_total does not cover the job"
    return None


def check_batch_cheque(job: FakeJob, frame: Frame) -> str | None:
    """Why an add_slices batch's payment does not verify, or None when it does."""
    payment = frame["payment"]
    text = batch_text(job.id, frame["ref"], payment["max_total"])
    if recover(text, payment["signature"]) != job.deploy["payment"]["account"]:
        return "the batch's cheque is not signed by the job's paying account"
    offer = Decimal(job.deploy["slice_payment_offer"])
    if Decimal(payment["max_total"]) < offer * len(frame["values"]) * job.replicas:
        return "the batch's payment does not cover its slices"
    return None


async def drop(ws: ServerConnection) -> None:
    """Cut the connection as a network failure would (no close frame), once data is out."""
    await asyncio.sleep(0.1)
    ws.transport.abort()


async def reply(ws: ServerConnection, message: m.Message) -> None:
    """Send a protocol message as the scheduler does."""
    await ws.send(json.dumps(message.frame()))


async def event(ws: ServerConnection, job: FakeJob, name: str, data: Any) -> None:
    await reply(ws, m.Event(job=job.id, event=name, data=data))


class PendingScheduler(FakeScheduler):
    """Jobs stay running (no results) until a test or a cancel ends them."""

    async def play(
        self, ws: ServerConnection, job: FakeJob, connection: int, redeploy: bool
    ) -> None:
        await event(ws, job, "status", job.status_frame(computed=0))
