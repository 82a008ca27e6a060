"""The supervisor (worker_static/supervisor.js) and the Worker tab, in headless Chromium.

No portal server here: a fake scheduler (a `websockets` server in a thread) speaks the worker
side of docs/protocol.md on /ws/worker/ and, on the same port, serves the worker files as the
portal does (testkit/worker_site.py), the portal's page scripts and the test pages. Each test
queues tasks, drives the supervisor in the page, and reads back what the supervisor sent.
Needs the vendored Pyodide: `npm ci --prefix frontend && node frontend/build.mjs`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from dcp.protocol.limits import MAX_FRAME_BYTES
from testkit.worker_site import CONTENT_TYPES, worker_file
from tests.worker_files import require_vendored_pyodide

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PORTAL_STATIC = REPO / "frontend" / "static" / "portal"
HARNESS = Path(__file__).with_name("harness.html")
PYODIDE_TIMEOUT_S = 90  # a Python slice on a cold sandbox includes loading Pyodide
EARNED_PER_RESULT = Decimal("0.001")


require_vendored_pyodide()

Message = dict[str, Any]


class FakeScheduler:
    """The scheduler's side of /ws/worker/: welcome, one queued task per `ready` (else
    `waiting`), an `ack` for every `result`. Records every frame the worker sends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.lock = threading.Lock()
        self.tasks: deque[Message] = deque()
        self.received: list[Message] = []
        self.closed: list[tuple[int, int | None]] = []  # (connection number, close code)
        self.connections: list[ServerConnection] = []
        self.worker_page = ""
        self.server: Server | None = None
        self.origin = ""
        self.generation = 0  # frames of connections from an earlier test are not recorded

    def start(self) -> None:
        self.thread.start()
        self.server = self._run(self._listen())
        port = self.server.sockets[0].getsockname()[1]
        self.origin = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        self._run(self.server.wait_closed())
        self.loop.call_soon_threadsafe(self.loop.stop)

    def reset(self) -> None:
        for connection in list(self.connections):
            self._run(connection.close(1001, "next test"))
        with self.lock:
            self.generation += 1
            self.tasks.clear()
            self.received.clear()
            self.closed.clear()
            self.connections.clear()

    # ------------------------------------------------------------------ test side

    def queue_task(self, task: Message) -> None:
        with self.lock:
            self.tasks.append(task)

    def send(self, message: Message, connection: int = -1) -> None:
        self._run(self.connections[connection].send(json.dumps(message)))

    def close(self, code: int, connection: int = -1) -> None:
        self._run(self.connections[connection].close(code, "closed by the test"))

    def messages(self, kind: str) -> list[Message]:
        with self.lock:
            return [message for message in self.received if message["type"] == kind]

    def wait_for(
        self, condition: Callable[[], Any], timeout: float = 20, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.05)
        with self.lock:
            seen = [message["type"] for message in self.received]
        raise AssertionError(f"timed out waiting for {what}; the worker sent {seen}")

    def wait_for_message(self, kind: str, timeout: float = 20, **fields: Any) -> Message:
        def match() -> Message | None:
            for message in self.messages(kind):
                if all(message.get(key) == value for key, value in fields.items()):
                    return message
            return None

        return self.wait_for(match, timeout, f"a {kind} message with {fields}")

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    # --------------------------------------------------------------- server side

    async def _listen(self) -> Server:
        # A frame over the protocol's limit closes the socket, as the portal's does.
        return await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._serve_file,
            max_size=MAX_FRAME_BYTES,
        )

    async def _handle(self, connection: ServerConnection) -> None:
        with self.lock:
            generation = self.generation
            number = len(self.connections)
            self.connections.append(connection)
        said_waiting = False
        async for frame in connection:
            message = json.loads(frame)
            with self.lock:
                if generation == self.generation:
                    self.received.append({**message, "_connection": number})
            kind = message.get("type")
            if kind == "hello" and _wrong_group_secret(message):
                await self._reply(
                    connection,
                    type="error",
                    id=message["id"],
                    code="EINVALID",
                    message="compute group lab: unknown group or wrong join secret",
                )
            elif kind == "hello":
                await self._reply(
                    connection,
                    type="welcome",
                    id=message["id"],
                    worker=f"w-{number}",
                    address="0x00000000000000000000000000000000000000aa",
                )
            elif kind == "ready":
                with self.lock:
                    task = self.tasks.popleft() if self.tasks else None
                if task is not None:
                    await self._reply(connection, **task)
                elif not said_waiting:
                    said_waiting = True
                    await self._reply(connection, type="waiting")
            elif kind == "result":
                accepted = len(message["results"]) + len(message["errors"])
                earned = EARNED_PER_RESULT * len(message["results"])
                await self._reply(
                    connection, type="ack", id=message["id"], accepted=accepted, earned=str(earned)
                )
        with self.lock:
            if generation == self.generation:
                self.closed.append((number, connection.close_code))

    @staticmethod
    async def _reply(connection: ServerConnection, **message: Any) -> None:
        await connection.send(json.dumps(message))

    def _serve_file(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/ws/worker/":
            return None  # go on with the websocket handshake
        served = self._file_for(path)
        if served is None:
            return connection.respond(404, "not found\n")
        body, file_headers = served
        headers = Headers(file_headers)
        headers["Content-Length"] = str(len(body))
        headers["Cache-Control"] = "no-store"
        # Cross-origin isolation gives the page SharedArrayBuffer, hence Python interrupts.
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        headers["Cross-Origin-Embedder-Policy"] = "require-corp"
        return Response(200, "OK", headers, body)

    def _file_for(self, path: str) -> tuple[bytes, dict[str, str]] | None:
        html = {"Content-Type": CONTENT_TYPES[".html"]}
        if path == "/harness.html":
            return HARNESS.read_bytes(), html
        if path == "/portal/worker/":
            return self.worker_page.encode(), html
        if path.startswith("/static/portal/"):
            file = (PORTAL_STATIC / path.removeprefix("/static/portal/")).resolve()
            if file.is_relative_to(PORTAL_STATIC) and file.is_file():
                content_type = CONTENT_TYPES.get(file.suffix, "application/octet-stream")
                return file.read_bytes(), {"Content-Type": content_type}
            return None
        # The portal's own worker files, headers and sandbox Content-Security-Policy.
        return worker_file(path, self.origin)


@pytest.fixture(autouse=True)
def _fast_secrets() -> None:
    """Overrides the autouse fixture of tests/conftest.py: these tests need no database."""


@pytest.fixture(scope="module")
def fake_scheduler() -> Iterator[FakeScheduler]:
    scheduler = FakeScheduler()
    scheduler.start()
    yield scheduler
    scheduler.stop()


@pytest.fixture(scope="module")
def harness_page(browser: Any, fake_scheduler: FakeScheduler) -> Iterator[Any]:
    """One harness page for the module, so Pyodide loads once (the cold start is slow)."""
    context = browser.new_context()
    context.set_default_timeout(PYODIDE_TIMEOUT_S * 1000)
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.goto(f"{fake_scheduler.origin}/harness.html")
    page.wait_for_function("window.harnessReady === true")
    yield page
    context.close()
    assert page_errors == []


@pytest.fixture
def scheduler(fake_scheduler: FakeScheduler, harness_page: Any) -> Iterator[FakeScheduler]:
    harness_page.evaluate("window.supervisor?.stop()")
    fake_scheduler.reset()
    yield fake_scheduler
    harness_page.evaluate("window.supervisor?.stop()")


class Worker:
    """The supervisor in the harness page (its pool's stats are the sandbox frame's as of its
    last reply: wait for a change rather than read it once)."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def start(self, cores: int = 2, **options: Any) -> None:
        self.page.evaluate(
            "([cores, options]) => { newSupervisor(cores, options); supervisor.start(); }",
            [cores, options],
        )

    def stop(self) -> None:
        self.page.evaluate("supervisor.stop()")

    def call(self, expression: str, *args: Any) -> Any:
        return self.page.evaluate(expression, *args)

    def states(self) -> list[str]:
        return [entry["state"] for entry in self.page.evaluate("events.states")]

    def stats(self) -> dict[str, Any]:
        return self.page.evaluate("supervisor.stats")

    def busy_sandboxes(self) -> int:
        return sum(sandbox["busy"] for sandbox in self.page.evaluate("pool.stats()"))


@pytest.fixture
def worker(scheduler: FakeScheduler, harness_page: Any) -> Worker:
    return Worker(harness_page)


_job_numbers = count(1)

SLOW_JS = "async (x) => { await new Promise((done) => setTimeout(done, 60000)); return x; }"


def task(
    language: str,
    source: str,
    data: list[Any],
    args: list[Any] | None = None,
    lease_seconds: float = 60,
) -> Message:
    number = next(_job_numbers)
    return {
        "type": "task",
        "task": f"t-{number}",
        "job": {"id": f"job-{number}", "language": language, "source": source, "args": args or []},
        "slices": [{"slice": n, "datum": datum} for n, datum in enumerate(data, start=1)],
        "lease_seconds": lease_seconds,
    }


def results_of(scheduler: FakeScheduler, job: str) -> dict[int, Any]:
    return {
        entry["slice"]: entry["value"]
        for message in scheduler.messages("result")
        if message["job"] == job
        for entry in message["results"]
    }


def errors_of(scheduler: FakeScheduler, job: str) -> dict[int, Message]:
    return {
        entry["slice"]: entry
        for message in scheduler.messages("result")
        if message["job"] == job
        for entry in message["errors"]
    }


# ----------------------------------------------------------------------------- session


def test_the_worker_says_hello_then_announces_its_free_cores(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    worker.start(cores=2, minWage="0.002")

    hello = scheduler.wait_for_message("hello")
    ready = scheduler.wait_for_message("ready")

    assert hello["version"] == 1
    assert hello["cores"] == 2
    assert hello["min_wage"] == "0.002"  # credits per CPU-second, as the scheduler reads it
    assert isinstance(hello["capabilities"]["webgpu"], bool)
    assert ready["capacity"] == 2
    scheduler.wait_for(lambda: worker.states()[-1:] == ["waiting"], what="state waiting")
    assert worker.states()[:1] == ["connecting"]


def test_the_worker_joins_compute_groups_in_its_hello_and_a_wrong_secret_stops_it(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    lab = {"joinKey": "lab", "joinSecret": "s3cret"}
    worker.start(cores=1, computeGroups=[lab])
    first = scheduler.wait_for_message("hello")
    scheduler.wait_for_message("ready")

    worker.call("(lab) => supervisor.setComputeGroups([lab], {leavePublicGroup: true})", lab)
    scheduler.wait_for(lambda: len(scheduler.messages("hello")) == 2, what="a second hello")
    second = scheduler.messages("hello")[1]
    worker.stop()
    scheduler.reset()
    worker.start(cores=1, computeGroups=[{"joinKey": "lab", "joinSecret": "wrong"}])
    scheduler.wait_for(lambda: worker.states()[-1:] == ["error"], what="state error")

    assert first["compute_groups"] == [lab] and "leave_public_group" not in first
    assert second["compute_groups"] == [lab] and second["leave_public_group"] is True
    assert second["_connection"] == first["_connection"]  # the same socket
    log = worker.call("events.log.map((entry) => entry.message)")
    assert any(
        "refused this worker's hello" in line and "wrong join secret" in line for line in log
    )
    assert scheduler.messages("ready") == []


def test_python_slices_come_back_as_results_and_the_ack_counts_in_the_stats(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    job = task("python", "def work(x, k):\n    return x * k\n", [1, 2, 3], args=[10])
    scheduler.queue_task(job)

    worker.start(cores=2)

    job_id = job["job"]["id"]
    scheduler.wait_for(
        lambda: len(results_of(scheduler, job_id)) == 3, PYODIDE_TIMEOUT_S, "three results"
    )
    assert results_of(scheduler, job_id) == {1: 10, 2: 20, 3: 30}
    assert errors_of(scheduler, job_id) == {}
    for message in scheduler.messages("result"):
        assert all(
            isinstance(entry["ms"], int) and entry["ms"] >= 0 for entry in message["results"]
        )
    scheduler.wait_for(lambda: worker.stats()["slicesComputed"] == 3, what="stats after the ack")
    assert worker.stats() == {
        "slicesComputed": 3,
        "creditsEarned": "0.003",
        "inFlight": 0,
        "state": "waiting",
    }


def test_a_finished_task_is_sent_as_one_result_message_then_capacity_is_announced_again(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    job = task("js", "(x) => x + 1", [1, 2, 3])
    scheduler.queue_task(job)

    worker.start(cores=1)

    result = scheduler.wait_for_message("result", job=job["job"]["id"])
    assert [(entry["slice"], entry["value"]) for entry in result["results"]] == [
        (1, 2),
        (2, 3),
        (3, 4),
    ]
    time.sleep(0.5)
    assert len(scheduler.messages("result")) == 1
    kinds = [message["type"] for message in scheduler.received]
    assert "ready" in kinds[kinds.index("result") :]


def test_results_of_an_unfinished_task_are_sent_every_250_ms(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    source = "async (ms) => { await new Promise((done) => setTimeout(done, ms)); return ms; }"
    job = task("js", source, [0, 1500])
    scheduler.queue_task(job)

    worker.start(cores=2)

    first = scheduler.wait_for_message("result")
    assert [entry["slice"] for entry in first["results"]] == [1]
    scheduler.wait_for(lambda: len(scheduler.messages("result")) == 2, what="a second result")
    assert results_of(scheduler, job["job"]["id"]) == {1: 0, 2: 1500}


def test_a_failing_slice_is_reported_in_errors_with_its_traceback(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    job = task("python", "def work(x):\n    return 1 / x\n", [2, 0])
    scheduler.queue_task(job)

    worker.start(cores=2)

    job_id = job["job"]["id"]
    scheduler.wait_for(lambda: errors_of(scheduler, job_id), PYODIDE_TIMEOUT_S, "an error")
    scheduler.wait_for(lambda: results_of(scheduler, job_id), what="a result")
    error = errors_of(scheduler, job_id)[2]
    assert error["name"] == "ZeroDivisionError"
    assert "ZeroDivisionError" in error["traceback"]
    assert results_of(scheduler, job_id) == {1: 0.5}


def test_a_slice_without_progress_for_its_lease_is_reported_as_no_progress(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    job = task("js", SLOW_JS, [1], lease_seconds=1)
    scheduler.queue_task(job)

    worker.start(cores=1)

    job_id = job["job"]["id"]
    scheduler.wait_for(lambda: errors_of(scheduler, job_id), what="a NoProgress error")
    assert errors_of(scheduler, job_id)[1]["name"] == "NoProgress"


MIB = 2**20
# Each slice's datum says what it does: fill the sandbox's memory, or return that many bytes.
GREEDY_PYTHON = (
    "kept = []\n\n"
    "def work(x):\n"
    "    if x == 'fill memory':\n"
    "        while True:\n"
    "            kept.append(bytearray(16 * 2**20))\n"
    "    return 'r' * x\n"
)


def test_a_slice_that_runs_out_of_memory_or_returns_too_much_is_an_error_and_work_goes_on(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    sizes = [int(5.2 * MIB), 3 * MIB // 2, 3 * MIB // 2, 3 * MIB // 2, 7]
    job = task("python", GREEDY_PYTHON, ["fill memory", *sizes])
    scheduler.queue_task(job)

    worker.start(cores=2)

    job_id = job["job"]["id"]
    scheduler.wait_for(
        lambda: len(errors_of(scheduler, job_id)) + len(results_of(scheduler, job_id)) == 6,
        PYODIDE_TIMEOUT_S,
        "every slice's outcome",
    )
    errors = errors_of(scheduler, job_id)
    assert errors[1]["name"] == "OutOfMemory", errors[1]
    assert errors[1]["message"].startswith(f"slice 1 of job {job_id} ran out of memory: ")
    assert "more than the 1 GiB a sandbox may use" in errors[1]["message"]
    assert errors[2] == {
        "slice": 2,
        "name": "ResultTooLarge",
        "message": "the result of slice 2 is 5.2 MiB of JSON; a slice result must fit in one "
        "4 MiB message (3.94 MiB of JSON)",
        "traceback": "",
    }
    # Results that fit one by one but not together arrived all the same, on the same socket.
    results = results_of(scheduler, job_id)
    assert {n: len(value) for n, value in results.items()} == {
        3: 3 * MIB // 2,
        4: 3 * MIB // 2,
        5: 3 * MIB // 2,
        6: 7,
    }
    assert scheduler.closed == []  # the socket stayed open all along
    assert {m["_connection"] for m in scheduler.received} == {0}
    scheduler.wait_for(lambda: worker.stats()["inFlight"] == 0, what="nothing left in flight")
    log = [entry["message"] for entry in worker.call("events.log")]
    assert any("ran out of memory" in line for line in log), log


# ------------------------------------------------------------------- progress, console


def test_slices_that_report_progress_have_their_leases_extended(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    source = (
        "async (x) => { for (let i = 0; i < 30; i++) {"
        " progress(i / 30); await new Promise((done) => setTimeout(done, 100)); } return x; }"
    )
    job = task("js", source, [7])
    scheduler.queue_task(job)

    worker.start(cores=1)

    job_id = job["job"]["id"]
    progress = scheduler.wait_for_message("progress", job=job_id)
    assert progress["slices"] == [1]
    scheduler.wait_for(lambda: results_of(scheduler, job_id), what="the result")
    assert 1 <= len(scheduler.messages("progress")) <= 2  # at most one every ~2 s


def test_console_lines_are_forwarded_at_most_twenty_a_second(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    source = "(x) => { for (let i = 0; i < 100; i++) console.log(`line ${i}`); return x; }"
    job = task("js", source, [1])
    scheduler.queue_task(job)

    worker.start(cores=1)

    job_id = job["job"]["id"]
    notice = scheduler.wait_for(
        lambda: [m for m in scheduler.messages("console") if "dropped" in m["message"]],
        what="the dropped-lines notice",
    )[0]
    lines = [m for m in scheduler.messages("console") if m["message"].startswith("line ")]
    assert len(lines) == 20
    assert lines[0] == {
        "type": "console",
        "job": job_id,
        "slice": 1,
        "level": "log",
        "message": "line 0",
        "_connection": 0,
    }
    assert notice["message"] == "… 80 lines dropped"
    assert notice["job"] == job_id


# ---------------------------------------------------------------- stop, abort, reconnect


def test_stop_hands_in_flight_slices_back_and_closes_the_socket(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    job = task("js", SLOW_JS, [1, 2, 3])
    scheduler.queue_task(job)
    worker.start(cores=2)
    scheduler.wait_for(lambda: worker.busy_sandboxes() == 2, what="two busy sandboxes")

    worker.stop()

    returned = scheduler.wait_for_message("return")
    assert returned["job"] == job["job"]["id"]
    assert sorted(returned["slices"]) == [1, 2, 3]
    scheduler.wait_for(lambda: scheduler.closed, what="the socket to close")
    assert scheduler.closed == [(0, 1000)]
    assert scheduler.messages("result") == []
    scheduler.wait_for(lambda: worker.busy_sandboxes() == 0, what="no busy sandbox")
    assert worker.states()[-1] == "stopped"


def test_an_aborted_job_is_dropped_and_its_cores_announced_free(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    job = task("js", SLOW_JS, [1, 2])
    scheduler.queue_task(job)
    worker.start(cores=2)
    scheduler.wait_for(lambda: worker.busy_sandboxes() == 2, what="two busy sandboxes")
    readies_before = len(scheduler.messages("ready"))

    scheduler.send({"type": "abort", "job": job["job"]["id"]})

    scheduler.wait_for(lambda: len(scheduler.messages("ready")) > readies_before, what="ready")
    assert scheduler.messages("ready")[-1]["capacity"] == 2
    scheduler.wait_for(lambda: worker.busy_sandboxes() == 0, what="no busy sandbox")
    time.sleep(0.5)
    assert scheduler.messages("result") == []
    assert scheduler.messages("return") == []
    assert worker.stats()["inFlight"] == 0


def test_a_lost_connection_drops_the_slices_and_reconnects(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    job = task("js", SLOW_JS, [1, 2])
    scheduler.queue_task(job)
    worker.start(cores=2)
    scheduler.wait_for(lambda: worker.busy_sandboxes() == 2, what="two busy sandboxes")

    scheduler.close(1011)

    hello = scheduler.wait_for(
        lambda: [m for m in scheduler.messages("hello") if m["_connection"] == 1],
        what="a new hello",
    )[0]
    assert hello["cores"] == 2
    ready = scheduler.wait_for_message("ready", _connection=1)
    assert ready["capacity"] == 2
    assert "reconnecting" in worker.states()
    scheduler.wait_for(lambda: worker.busy_sandboxes() == 0, what="no busy sandbox")
    assert scheduler.messages("result") == []


def test_a_signed_out_worker_stops_instead_of_reconnecting(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    worker.start(cores=1)
    scheduler.wait_for_message("ready")

    scheduler.close(4401)

    scheduler.wait_for(lambda: worker.states()[-1:] == ["error"], what="state error")
    time.sleep(1.5)
    assert len(scheduler.messages("hello")) == 1


def test_credits_are_added_exactly(worker: Worker) -> None:
    assert worker.call("addCredits('0.1', '0.2')") == "0.3"
    assert worker.call("addCredits('0.000000001', '0.999999999')") == "1"
    assert worker.call("addCredits('1.50', '0.004', '0')") == "1.504"
    assert (
        worker.call("addCredits('123456789012.123456789', '0.000000001')")
        == "123456789012.12345679"
    )


# --------------------------------------------------------------------------------- pacing

# Starts a supervisor on pretend sandboxes: a slice's datum is how long it runs (ms) and its
# value. The page records each run (`runs`: job, slice, start, end on the page's clock), each
# `ready` the supervisor sends (`readies`: at, capacity) and each pacing it reports (`pacings`).
START_PACED_JS = """
([cores, options]) => {
  window.runs = [];
  window.readies = [];
  window.pacings = [];
  class RecordingWebSocket extends WebSocket {
    send(text) {
      const message = JSON.parse(text);
      const { type, capacity } = message;
      if (type === "ready") readies.push({ at: performance.now(), capacity });
      super.send(text);
    }
  }
  const pool = {
    resize() {},
    setGpu() {},
    abortJob() {},
    run(job, slice, ms) {
      const run = { job: job.id, slice, start: performance.now(), end: null };
      runs.push(run);
      return new Promise((done) => setTimeout(() => {
        run.end = performance.now();
        done({ value: ms });
      }, ms));
    },
  };
  newSupervisor(cores, {
    ...options, pool, WebSocket: RecordingWebSocket, onPacing: (pacing) => pacings.push(pacing),
  });
  supervisor.start();
}
"""

# navigator.getBattery() answering with a battery that the test charges or not.
FAKE_BATTERY_JS = """
() => {
  window.battery = Object.assign(new EventTarget(), { charging: false });
  const getBattery = async () => battery;
  Object.defineProperty(navigator, "getBattery", { configurable: true, value: getBattery });
}
"""

BUSY_REASON = re.compile(
    r"holding back: slices run \d+\.\d\N{MULTIPLICATION SIGN} slower than their recent pace"
    r" \(the machine is busy\)"
)
CLOCK_GRAIN_MS = 0.5  # performance.now() is coarsened; a rest is never cut shorter than this


def start_paced(worker: Worker, cores: int, **options: Any) -> None:
    worker.call(START_PACED_JS, [cores, options])


def runs_done(worker: Worker, count: int, scheduler: FakeScheduler) -> list[Message]:
    """The pretend sandboxes' runs, once `count` of them have ended (in the order they began)."""
    scheduler.wait_for(
        lambda: sum(run["end"] is not None for run in worker.call("runs")) == count,
        what=f"{count} slices computed",
    )
    return list(worker.call("runs"))


def slices_of(job: Message, first: int, durations: list[int]) -> Message:
    """A task of more slices of `job`'s job, numbered from `first`."""
    more = task("js", "unused", durations)
    more["job"] = job["job"]
    more["slices"] = [{"slice": first + n, "datum": ms} for n, ms in enumerate(durations)]
    return more


def assert_each_rest_as_long_as_the_slice_before(runs: list[Message], duty_cycle: float) -> None:
    """One core: each run began no sooner than the last one's length * (1-d)/d after it ended,
    so the busy share of the whole, counted run by run, is at most the duty cycle."""
    for before, after in itertools.pairwise(runs):
        ran = before["end"] - before["start"]
        rest = ran * (1 - duty_cycle) / duty_cycle
        assert after["start"] - before["end"] >= rest - CLOCK_GRAIN_MS
    busy = sum(run["end"] - run["start"] for run in runs[:-1])
    assert busy / (runs[-1]["start"] - runs[0]["start"]) <= duty_cycle + 0.01


def test_at_a_duty_cycle_of_one_half_a_core_rests_as_long_as_it_ran_and_is_not_announced_meanwhile(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    first = task("js", "unused", [150, 60, 150])
    second = task("js", "unused", [90, 150])
    scheduler.queue_task(first)
    scheduler.queue_task(second)
    jobs = [first["job"]["id"], second["job"]["id"]]

    start_paced(worker, cores=1, dutyCycle=0.5, jobs=jobs)

    assert scheduler.wait_for_message("hello")["jobs"] == jobs
    runs = runs_done(worker, 5, scheduler)
    assert_each_rest_as_long_as_the_slice_before(runs, 0.5)
    # The second task came only when the first task's last slice had rested: every `ready`
    # after the first slice waited for the rest of the slice before it.
    readies = worker.call("readies")
    assert readies[0]["capacity"] == 1
    for ready in readies[1:]:
        last = max((run for run in runs if run["start"] < ready["at"]), key=lambda r: r["start"])
        assert last["end"] is not None and last["end"] <= ready["at"]
        assert ready["at"] - last["end"] >= last["end"] - last["start"] - CLOCK_GRAIN_MS
    assert len(readies) >= 2
    assert worker.call("supervisor.pacing") == {
        "dutyCycle": 0.5,
        "activeDutyCycle": 0.5,
        "cores": 1,
        "activeCores": 1,
        "holdingBack": False,
        "reason": "",
    }

    refused = worker.call(
        "() => { try { supervisor.setDutyCycle(0); }"
        " catch (error) { return `${error.name}: ${error.message}`; } }"
    )
    worker.call("supervisor.setDutyCycle(0.25)")

    assert refused == (
        "TypeError: dutyCycle is the share of each core's time spent computing, "
        "a number from 0.1 to 1, not 0"
    )
    assert worker.call("pacings")[-1]["dutyCycle"] == 0.25
    assert worker.call("supervisor.dutyCycle") == 0.25


def test_slices_slower_than_their_job_s_pace_make_the_worker_hold_back_until_the_pace_returns(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    at_pace = task("js", "unused", [200] * 6)
    slow = slices_of(at_pace, 7, [800] * 4)  # the machine got busy: 4x slower
    at_pace_again = slices_of(at_pace, 11, [200] * 6)
    for queued in (at_pace, slow, at_pace_again):
        scheduler.queue_task(queued)

    start_paced(worker, cores=2)

    runs = runs_done(worker, 16, scheduler)
    pacings = worker.call("pacings")
    held_back = [pacing for pacing in pacings if pacing["holdingBack"]]
    assert held_back, pacings
    assert BUSY_REASON.fullmatch(held_back[0]["reason"]), held_back[0]
    assert (held_back[0]["cores"], held_back[0]["activeCores"]) == (2, 1)
    # One core fewer: the task after the slow ones was asked for with capacity 1, and its
    # first slices ran one at a time; at their pace again, the worker let go.
    readies = worker.call("readies")
    recovering = [run for run in runs if run["slice"] > 10]
    asked = [ready for ready in readies if ready["at"] < recovering[0]["start"]][-1]
    assert asked["capacity"] == 1
    assert all(b["start"] >= a["end"] for a, b in itertools.pairwise(recovering[:3]))
    scheduler.wait_for(lambda: not worker.call("supervisor.pacing.holdingBack"), what="let go")
    assert worker.call("supervisor.pacing") == {
        "dutyCycle": 1,
        "activeDutyCycle": 1,
        "cores": 2,
        "activeCores": 2,
        "holdingBack": False,
        "reason": "",
    }
    scheduler.wait_for(lambda: worker.call("readies")[-1]["capacity"] == 2, what="ready 2")
    log = [entry["message"] for entry in worker.call("events.log")]
    assert any(line.startswith("Holding back: slices run ") for line in log), log
    assert "No longer holding back; 2 of 2 cores at duty cycle 1" in log


def test_on_battery_the_worker_holds_back_to_half_its_cores_and_half_the_time(
    worker: Worker, scheduler: FakeScheduler
) -> None:
    job = task("js", "unused", [120, 120, 120])
    scheduler.queue_task(job)
    worker.call(FAKE_BATTERY_JS)
    try:
        start_paced(worker, cores=2)

        runs = runs_done(worker, 3, scheduler)
        assert worker.call("readies")[0]["capacity"] == 1
        assert_each_rest_as_long_as_the_slice_before(runs, 0.5)
        assert worker.call("supervisor.pacing") == {
            "dutyCycle": 1,
            "activeDutyCycle": 0.5,
            "cores": 2,
            "activeCores": 1,
            "holdingBack": True,
            "reason": "holding back: on battery",
        }

        worker.call("battery.charging = true; battery.dispatchEvent(new Event('chargingchange'))")

        assert worker.call("pacings")[-1]["reason"] == ""
        scheduler.wait_for(lambda: worker.call("readies")[-1]["capacity"] == 2, what="ready 2")
        log = [entry["message"] for entry in worker.call("events.log")]
        assert "Holding back: on battery; 1 of 2 cores at duty cycle 0.5" in log
        assert "No longer holding back; 2 of 2 cores at duty cycle 1" in log
    finally:
        worker.call("() => { delete navigator.getBattery; }")


# ------------------------------------------------------------------------- Worker tab


@pytest.fixture
def worker_tab(browser: Any, scheduler: FakeScheduler) -> Iterator[Any]:
    from django.template.loader import render_to_string

    scheduler.worker_page = render_to_string(
        "web/worker.html", {"tab": "worker", "credits_earned": "1.5", "slices_computed": 7}
    )
    context = browser.new_context()
    context.set_default_timeout(PYODIDE_TIMEOUT_S * 1000)
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.goto(f"{scheduler.origin}/portal/worker/")
    yield page
    context.close()
    assert page_errors == []


# A browser with a GPU, for the Worker tab: navigator.gpu answering with an adapter.
FAKE_GPU_JS = """
Object.defineProperty(navigator, "gpu", {
  configurable: true,
  value: { requestAdapter: async () => ({ info: { description: "Test Adapter 9000" } }) },
});
"""


def gpu_line_settled(page: Any) -> str:
    """The Worker tab's GPU line, once the search for an adapter has answered."""
    line = page.get_by_test_id("worker-gpu")
    page.wait_for_function(
        "!document.querySelector('[data-testid=\"worker-gpu\"]').textContent.includes('looking')"
    )
    return str(line.text_content())


def test_the_worker_tab_computes_and_adds_to_the_totals(
    browser: Any, worker_tab: Any, scheduler: FakeScheduler
) -> None:
    page = worker_tab
    threads = page.evaluate("navigator.hardwareConcurrency")
    cores = page.get_by_label("Cores")
    assert cores.locator("option").count() == threads
    assert cores.input_value() == str(max(1, threads - 1))
    status = page.get_by_test_id("worker-status")
    assert status.text_content() == "Stopped"
    assert page.get_by_role("button", name="Stop").is_disabled()
    # Chromium runs here with --disable-gpu: no adapter, so no GPU to offer.
    assert gpu_line_settled(page).startswith("GPU: none found")
    assert page.get_by_label("Use GPU").is_disabled()
    assert not page.get_by_label("Use GPU").is_checked()
    job = task("python", "def work(x):\n    return x * x\n", [3, 4])
    scheduler.queue_task(job)

    page.get_by_role("button", name="Start").click()

    assert scheduler.wait_for_message("hello")["capabilities"] == {"webgpu": False}
    page.wait_for_function(
        "document.querySelector('[data-testid=\"slices-computed\"]').textContent === '9'"
    )
    assert page.get_by_test_id("credits-earned").text_content() == "1.502"
    assert results_of(scheduler, job["job"]["id"]) == {1: 9, 2: 16}
    assert status.text_content() == "Waiting for work"
    assert page.get_by_role("button", name="Start").is_disabled()

    page.get_by_role("button", name="Stop").click()

    assert status.text_content() == "Stopped"
    assert page.get_by_role("button", name="Start").is_enabled()
    assert page.get_by_test_id("worker-log").locator("li").count() >= 3

    check_the_gpu_switch_of_a_tab_with_a_gpu(browser, scheduler)


def check_the_gpu_switch_of_a_tab_with_a_gpu(browser: Any, scheduler: FakeScheduler) -> None:
    """An adapter is shown and offered; unticking "Use GPU" while running says hello again on
    the same socket, and the choice outlives a reload."""
    context = browser.new_context()
    context.add_init_script(FAKE_GPU_JS)
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    try:
        page.goto(f"{scheduler.origin}/portal/worker/")
        assert gpu_line_settled(page) == "GPU: Test Adapter 9000"
        use_gpu = page.get_by_label("Use GPU")
        assert use_gpu.is_enabled() and use_gpu.is_checked()
        hellos_before = len(scheduler.messages("hello"))

        page.get_by_role("button", name="Start").click()
        hello = scheduler.wait_for(
            lambda: scheduler.messages("hello")[hellos_before:], what="the hello of a GPU tab"
        )[0]
        assert hello["capabilities"] == {"webgpu": True}
        scheduler.wait_for_message("ready", _connection=hello["_connection"])
        use_gpu.uncheck()
        again = scheduler.wait_for(
            lambda: scheduler.messages("hello")[hellos_before + 1 :], what="a second hello"
        )[0]

        assert again["capabilities"] == {"webgpu": False}
        assert again["_connection"] == hello["_connection"]  # no reconnect: slices carry on
        page.get_by_role("button", name="Stop").click()
        page.reload()
        assert gpu_line_settled(page) == "GPU: Test Adapter 9000"
        assert use_gpu.is_enabled() and not use_gpu.is_checked()
    finally:
        context.close()
    assert page_errors == []


# ------------------------------------------------------------- a sandbox that eats memory

# A JS work function whose heap grows until Chromium ends its renderer process.
HEAP_BOMB_JS = "(x) => { const kept = []; for (;;) kept.push(new Array(1e6).fill(1.5)); }"
BOMB_TIMEOUT_S = 60  # it takes Chromium's renderer down within seconds (up to 19 s measured)


def test_a_js_slice_that_exhausts_memory_crashes_its_sandboxes_not_the_worker_tab(
    browser: Any, fake_scheduler: FakeScheduler
) -> None:
    """Chromium ends the whole renderer at a worker's heap limit: the sandboxes' frame has a
    process of its own, so the bomb takes that down, and the tab reports it and goes on."""
    fake_scheduler.reset()
    squares = "def work(x):\n    return x * x\n"
    before = task("python", squares, [2, 3])
    bomb = task("js", HEAP_BOMB_JS, [1])
    after = {**task("python", squares, [4, 5]), "job": before["job"]}  # the same job, again
    after["slices"] = [{"slice": 3, "datum": 4}, {"slice": 4, "datum": 5}]
    for queued in (before, bomb, after):
        fake_scheduler.queue_task(queued)
    context = browser.new_context()
    context.set_default_timeout(PYODIDE_TIMEOUT_S * 1000)
    page = context.new_page()
    page.goto(f"{fake_scheduler.origin}/harness.html")
    page.wait_for_function("window.harnessReady === true")
    # Playwright takes the crash of any frame's process for the page's, and refuses to
    # evaluate in the page after it: a session of its own reaches the page all the same.
    session = context.new_cdp_session(page)

    def evaluate(expression: str) -> Any:
        reply = session.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        assert "exceptionDetails" not in reply, reply
        return reply["result"].get("value")

    try:
        # One core: the bomb runs after the first job's slices, not beside them (its crash
        # takes every slice in the frame's process with it, so beside them they would be lost).
        evaluate("newSupervisor(1); supervisor.start(); true")

        job_id = before["job"]["id"]
        fake_scheduler.wait_for(
            lambda: len(results_of(fake_scheduler, job_id)) == 2, PYODIDE_TIMEOUT_S, "results"
        )
        crashed = fake_scheduler.wait_for(
            lambda: errors_of(fake_scheduler, bomb["job"]["id"]),
            BOMB_TIMEOUT_S,
            "the bomb's slice reported",
        )[1]
        fake_scheduler.wait_for(
            lambda: len(results_of(fake_scheduler, job_id)) == 4,
            PYODIDE_TIMEOUT_S,
            "the other job's slices after the crash",
        )

        assert crashed["name"] == "SandboxCrashed"
        assert crashed["message"].startswith(
            f"slice 1 of job {bomb['job']['id']} was lost with its sandbox: "
            "the sandboxes' process stopped answering for "
        )
        assert results_of(fake_scheduler, job_id) == {1: 4, 2: 9, 3: 16, 4: 25}
        assert errors_of(fake_scheduler, job_id) == {}
        # The tab itself lived on: the same socket all along, and it still answers.
        assert fake_scheduler.closed == []
        assert {message["_connection"] for message in fake_scheduler.received} == {0}
        assert evaluate("supervisor.stats.inFlight") == 0
        log = evaluate("events.log.map((entry) => entry.message)")
        assert any("lost its sandbox (SandboxCrashed)" in line for line in log), log
        assert evaluate("pool.stats().length") >= 1  # a fresh frame of sandboxes
    finally:
        context.close()


def _wrong_group_secret(hello: Message) -> bool:
    """The fake's stand-in for a compute group check: the secret "wrong" is refused."""
    return any(group.get("joinSecret") == "wrong" for group in hello.get("compute_groups", []))
