"""A worker that misbehaves on purpose: it speaks the worker socket over a real websocket, but
sends whatever it is told to (forged results, floods, frames over the limit).

For tests only. An honest worker is testkit.synthetic_worker; this one never computes anything.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from dcp.protocol import messages as wire

CLOSED_BEFORE_ANY_CODE = 1006  # the connection dropped without a close frame


class RogueWorker:
    """One worker connection in a signed-in volunteer's session, driven frame by frame."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.seen: list[dict[str, Any]] = []  # every frame received, in order

    @classmethod
    async def connect(
        cls, url: str, session: str, *, cores: int = 1, capabilities: dict[str, Any] | None = None
    ) -> RogueWorker:
        """Open the worker socket as a Worker tab would and say hello."""
        socket = await websockets.connect(
            url.replace("http", "ws", 1) + "/ws/worker/",
            additional_headers={"Cookie": f"sessionid={session}", "Origin": url},
            max_size=2**26,
            ping_interval=None,
        )
        rogue = cls(socket)
        hello = wire.WorkerHello(type="hello", id="hello", cores=cores)
        await rogue.send({**hello.frame(), "capabilities": capabilities or {}})
        await rogue.next("welcome")
        return rogue

    async def send(self, frame: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(frame))

    async def next(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        """The next frame of type `kind`, skipping others."""
        while True:
            frame = json.loads(await asyncio.wait_for(self.socket.recv(), timeout))
            self.seen.append(frame)
            if frame["type"] == kind:
                return frame

    async def take_task(self, capacity: int = 1) -> dict[str, Any]:
        """Say `ready` and wait for a task."""
        await self.send(wire.Ready(type="ready", capacity=capacity).frame())
        return await self.next("task")

    async def results(self, job: str, values: dict[int, Any], request_id: str = "r") -> None:
        """Send a `result` frame claiming these slice values, unchecked."""
        results = [{"slice": n, "value": value, "ms": 1.0} for n, value in values.items()]
        await self.send({"type": "result", "id": request_id, "job": job, "results": results})

    async def flood(self, frame: dict[str, Any], count: int) -> int:
        """Send `frame` up to `count` times as fast as the socket takes them; how many went
        before the server closed the connection."""
        text = json.dumps(frame)
        for sent in range(count):
            try:
                await self.socket.send(text)
            except websockets.ConnectionClosed:
                return sent
        return count

    async def close_code(self, timeout: float = 10) -> int:
        """Read (and keep) frames until the server closes the socket; its close code."""
        try:
            while True:
                self.seen.append(json.loads(await asyncio.wait_for(self.socket.recv(), timeout)))
        except websockets.ConnectionClosed:
            pass
        return self.socket.close_code or CLOSED_BEFORE_ANY_CODE

    async def close(self) -> None:
        await self.socket.close()
