"""A synthetic worker: speaks the real worker protocol over a real websocket and runs the
work function natively in this process, so what it measures is the scheduler, not Pyodide.

For tests and benchmarks only: it executes job code without any sandbox.

    python -m testkit.synthetic_worker --url http://127.0.0.1:8000 --email w@example.com \
        --password '...' --workers 4
    python -m testkit.synthetic_worker --url http://127.0.0.1:8000 --token dcpw_...
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import re
import time
import urllib.parse
import urllib.request
from typing import Any

import websockets

from dcp.protocol import messages as wire
from dcp.runtime import slice as slice_runtime

TASK = wire.Task.model_fields["type"].default
ACK = wire.Ack.model_fields["type"].default


def log_in(url: str, email: str, password: str) -> str:
    """Sign in through the portal's login form as a browser would; returns the session id."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{url}/accounts/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, "no login form"
    body = urllib.parse.urlencode(
        {"login": email, "password": password, "csrfmiddlewaretoken": token.group(1)}
    ).encode()
    request = urllib.request.Request(f"{url}/accounts/login/", data=body, headers={"Referer": url})
    opener.open(request).read()
    for cookie in jar:
        if cookie.name == "sessionid":
            return cookie.value
    raise RuntimeError("login failed: no session cookie")


def compile_work(source: str) -> Any:
    """The job's work function, picked and compiled by the slice runtime (the rule every worker
    follows); progress() is checked but reported nowhere, since nothing here times slices out."""
    return slice_runtime.compile_work(source, _progress)


def _progress(value: Any = None) -> None:
    _, problem = slice_runtime.parse_progress(value)
    if problem is not None:
        raise ValueError(problem)


class SyntheticWorker:
    def __init__(
        self,
        url: str,
        session: str,
        cores: int = 1,
        delay: float = 0.0,
        lie: float = 0.0,
        gpu_ms: float | None = None,
        token: str | None = None,
        payment_address: str | None = None,
    ) -> None:
        self.url = url
        self.session = session  # "": none, then a worker token or anonymous
        self.token = token
        self.payment_address = payment_address
        self.cores = cores
        self.delay = delay  # seconds of "work" per slice, for chaos tests
        self.lie = lie  # the fraction of slices answered with a forged value, for trust tests
        self.gpu_ms = gpu_ms  # GPU milliseconds each result claims (None: it says nothing)
        self.computed = 0
        self.functions: dict[str, Any] = {}

    async def run_forever(self) -> None:
        """Work, and reconnect with backoff whenever the connection drops."""
        backoff = 0.2
        while True:
            try:
                await self.session_once()
                backoff = 0.2
            except (OSError, websockets.WebSocketException):
                pass  # the server went away: try again after the backoff
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 3.0)

    async def session_once(self) -> None:
        ws_url = self.url.replace("http", "ws", 1) + "/ws/worker/"
        headers = {"Origin": self.url}
        if self.session:
            headers["Cookie"] = f"sessionid={self.session}"
        async with websockets.connect(
            ws_url, additional_headers=headers, max_size=2**26, ping_interval=None
        ) as socket:
            hello = wire.WorkerHello(
                type="hello",
                id=1,
                cores=self.cores,
                token=self.token,
                payment_address=self.payment_address,
            )
            ready = wire.Ready(type="ready", capacity=self.cores).model_dump_json()
            await socket.send(hello.model_dump_json(exclude_none=True))
            await socket.send(ready)
            async for frame in socket:
                message = json.loads(frame)
                if message["type"] == TASK:
                    await socket.send(self.compute(message).model_dump_json(serialize_as_any=True))
                elif message["type"] == ACK:
                    await socket.send(ready)

    def compute(self, task: dict[str, Any]) -> wire.Results:
        """The `result` frame of a task: built without validating, as the scheduler builds
        its `task` frames (thousands of slices a frame)."""
        job = task["job"]
        work = self.functions.get(job["id"])
        if work is None:
            work = self.functions[job["id"]] = compile_work(job["source"])
        results = []
        started = time.perf_counter()
        for item in task["slices"]:
            if self.delay:
                time.sleep(self.delay)
            value = work(item["datum"], *job["args"])
            if self.lies_about(item["slice"]):
                value = {"forged": value}
            results.append({"slice": item["slice"], "value": value})
        elapsed_ms = (time.perf_counter() - started) * 1000 / max(len(results), 1)
        for result in results:
            result["ms"] = elapsed_ms
            if self.gpu_ms is not None:
                result["gpu_ms"] = self.gpu_ms
        self.computed += len(results)
        return wire.Results.model_construct(
            type="result", id=task["task"], job=job["id"], results=results
        )

    def lies_about(self, slice_number: int) -> bool:
        """Whether this slice's result is forged: the same `lie` fraction of every job's
        slices, spread evenly (the golden ratio's steps), so a test knows which."""
        return (slice_number * 0.6180339887498949) % 1 < self.lie


async def run_workers(
    url: str,
    session: str,
    count: int,
    delay: float,
    lie: float = 0.0,
    gpu_ms: float | None = None,
    *,
    token: str | None = None,
    payment_address: str | None = None,
) -> None:
    workers = [
        SyntheticWorker(
            url,
            session,
            delay=delay,
            lie=lie,
            gpu_ms=gpu_ms,
            token=token,
            payment_address=payment_address,
        )
        for _ in range(count)
    ]
    await asyncio.gather(*(worker.run_forever() for worker in workers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--email")
    parser.add_argument("--password")
    parser.add_argument("--session", help="a session id already signed in (instead of a login)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--lie", type=float, default=0.0, help="fraction of results to forge")
    parser.add_argument("--gpu-ms", type=float, help="GPU milliseconds each result claims")
    parser.add_argument("--token", help="a worker token (instead of a session)")
    parser.add_argument("--payment-address", help="the account address paid for its results")
    options = parser.parse_args()
    session = options.session or ""
    if not session and options.email:
        session = log_in(options.url, options.email, options.password)
    asyncio.run(
        run_workers(
            options.url,
            session,
            options.workers,
            options.delay,
            options.lie,
            options.gpu_ms,
            token=options.token,
            payment_address=options.payment_address,
        )
    )


if __name__ == "__main__":
    main()
