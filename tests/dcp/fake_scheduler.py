"""A fake scheduler speaking the client side of docs/protocol.md, for exec() tests.

It runs a `websockets` asyncio server on 127.0.0.1 in a background thread, checks the hello
and cheque signatures as the real one must, and plays a script: by default it accepts the job,
sends status, console and result events, then `complete`, and answers `results` pages with
`datum * 2`. Tests change the script by overriding `play` (or setting attributes).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import threading
from decimal import Decimal
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]


def recover(text: str, signature: str) -> str:
    """The address that signed `text` (EIP-191 personal message)."""
    return Account.recover_message(encode_defunct(text=text), signature=signature)


def server_job_hash(deploy: Frame) -> str:
    """The job hash as the scheduler computes it, from the frame it received."""
    keys = ("ref", "work", "args", "input", "slice_payment_offer")
    job = {key: deploy[key] for key in keys}
    canonical = json.dumps(job, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def slice_data(spec: Frame) -> list[Any]:
    """Every slice's datum, enumerated server-side."""
    if spec["kind"] == "values":
        return list(spec["values"])
    start, end, step = spec["start"], spec["end"], spec["step"]
    count = int((Decimal(str(end)) - Decimal(str(start))) / Decimal(str(step))) + 1
    return [start + n * step for n in range(count)]


class FakeJob:
    """What the fake knows of a deployed job."""

    def __init__(self, job_id: str, deploy: Frame) -> None:
        self.id = job_id
        self.deploy = deploy
        self.data = slice_data(deploy["input"])
        self.total = len(self.data)
        self.results = {n: datum * 2 for n, datum in enumerate(self.data, 1)}
        self.status = "running"

    def status_frame(self, computed: int | None = None) -> Frame:
        done = self.total if computed is None else computed
        return {
            "total": self.total,
            "distributed": self.total,
            "computed": done,
            "failed": 0,
            "status": self.status,
        }


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
        self.hello_error: tuple[str, str] | None = None
        self.deploy_error: tuple[str, str] | None = None
        self.result_batch = 3

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

    async def _authenticate(self, ws: ServerConnection) -> bool:
        nonce = secrets.token_hex(32)
        await ws.send(json.dumps({"type": "challenge", "version": 1, "nonce": nonce}))
        hello = json.loads(await ws.recv())
        self.frames.append(hello)
        signer = recover(f"DCP Portal client session\nnonce: {nonce}", hello["signature"])
        if signer != hello["identity"]:
            await send(ws, type="error", id=hello["id"], code="EBADSIG", message="bad signature")
            return False
        if self.hello_error is not None:
            code, message = self.hello_error
            await send(ws, type="error", id=hello["id"], code=code, message=message)
            return False
        await send(ws, type="welcome", id=hello["id"], identity=signer, user="ada@example.com")
        return True

    async def on_request(self, ws: ServerConnection, frame: Frame, connection: int) -> None:
        kind = frame["type"]
        if kind == "deploy":
            await self.on_deploy(ws, frame, connection)
        elif kind == "subscribe":
            job = self.job_by_id(frame["job"])
            status = job.status_frame()
            await send(ws, type="subscribed", id=frame["id"], job=job.id, status=status)
        elif kind == "results":
            job = self.job_by_id(frame["job"])
            rows = [[n, job.results[n]] for n in range(frame["start"], frame["end"] + 1)]
            await send(ws, type="results", id=frame["id"], job=job.id, results=rows)

    async def on_deploy(self, ws: ServerConnection, frame: Frame, connection: int) -> None:
        problem = check_cheque(frame)
        if problem is not None:
            await send(ws, type="error", id=frame["id"], code="EBADPAYMENT", message=problem)
            return
        if self.deploy_error is not None:
            code, message = self.deploy_error
            await send(ws, type="error", id=frame["id"], code=code, message=message)
            return
        job = self.jobs.get(frame["ref"])
        redeploy = job is not None
        if job is None:
            job = self.jobs[frame["ref"]] = FakeJob(f"job-{len(self.jobs) + 1}", frame)
        await send(ws, type="accepted", id=frame["id"], job=job.id, total=job.total)
        await self.play(ws, job, connection, redeploy)

    async def play(
        self, ws: ServerConnection, job: FakeJob, connection: int, redeploy: bool
    ) -> None:
        """The job's life as events: status, a console line, result batches, complete."""
        await event(ws, job, "status", job.status_frame(computed=0))
        await event(ws, job, "console", {"slice": 1, "level": "log", "message": "hello"})
        numbers = sorted(job.results, reverse=True)  # out of order on purpose
        for start in range(0, len(numbers), self.result_batch):
            chunk = numbers[start : start + self.result_batch]
            await event(ws, job, "result", [{"slice": n, "value": job.results[n]} for n in chunk])
        job.status = "finished"
        await event(ws, job, "status", job.status_frame())
        await event(ws, job, "complete", {"total": job.total})

    def job_by_id(self, job_id: str) -> FakeJob:
        return next(job for job in self.jobs.values() if job.id == job_id)


def check_cheque(deploy: Frame) -> str | None:
    """Why the deploy's payment does not verify, or None when it does."""
    payment = deploy["payment"]
    text = f"DCP Portal payment\njob: {server_job_hash(deploy)}\nmax total: {payment['max_total']}"
    if recover(text, payment["signature"]) != payment["account"]:
        return "the cheque does not verify"
    total = len(slice_data(deploy["input"]))
    if Decimal(payment["max_total"]) < Decimal(deploy["slice_payment_offer"]) * total:
        return "max_total does not cover the job"
    return None


async def drop(ws: ServerConnection) -> None:
    """Cut the connection as a network failure would (no close frame), once data is out."""
    await asyncio.sleep(0.1)
    ws.transport.abort()


async def send(ws: ServerConnection, **frame: Any) -> None:
    await ws.send(json.dumps(frame))


async def event(ws: ServerConnection, job: FakeJob, name: str, data: Any) -> None:
    await send(ws, type="event", job=job.id, event=name, data=data)
