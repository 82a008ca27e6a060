"""local_exec(): run a job on this machine, without the scheduler and without credits.

Workers are local processes: Python work functions run in `multiprocessing` processes (spawn
context, see dcp._localworker), JavaScript ones in `node` (see dcp._noderunner). The loop here
plays the scheduler: it hands one slice at a time to each idle worker, and keeps the network's
rules: a slice that raises is retried once, then the job fails with ETOOMANYERRORS; a slice that
runs `progress_timeout` seconds without calling progress() is stopped (its worker is replaced),
retried once, then the job fails with ENOPROGRESS.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import queue
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from . import _localworker
from ._noderunner import NODE_RUNNER
from .errors import DCPError
from .events import ConsoleCollapser, ProgressBar, ProgressBarOption, slice_event

if TYPE_CHECKING:
    from .job import Job
    from .results import ResultHandle

__all__ = ["run_local"]

MAX_ATTEMPTS = 2  # as the scheduler: a slice that fails twice fails the job
WAIT_S = 0.05  # how often the loop looks at progress deadlines
Message = dict[str, Any]
Events = queue.Queue[tuple["LocalWorker", Message]]


class LocalWorker(Protocol):
    """A local process that runs slices one at a time and reports messages to `events`."""

    def run(self, slice_number: int, datum: Any) -> None: ...
    def stop(self) -> None: ...


class PythonWorker:
    """A spawned Python process running dcp._localworker.serve."""

    def __init__(self, source: str, args: list[Any], events: Events) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_localworker.serve, args=(child, source, args), daemon=True
        )
        self._process.start()
        child.close()
        self._reader = threading.Thread(target=self._read, args=(events,), daemon=True)
        self._reader.start()

    def run(self, slice_number: int, datum: Any) -> None:
        with contextlib.suppress(OSError):  # a dead process: its reader reports the exit
            self._connection.send({"slice": slice_number, "datum": datum})

    def stop(self) -> None:
        # The reader closes the connection once it sees the end: closing it here, under a
        # reader blocked on it, would let the fd number be reused and read by the wrong worker.
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5)
        self._reader.join(5)

    def _read(self, events: Events) -> None:
        try:
            while True:
                events.put((self, self._connection.recv()))
        except (EOFError, OSError):
            events.put((self, {"type": "exit"}))
        finally:
            self._connection.close()


class NodeWorker:
    """A `node` process running the JavaScript runner, spoken to in JSON lines."""

    def __init__(self, node: str, source: str, args: list[Any], events: Events) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - node, with our own runner script
            [node, "-e", NODE_RUNNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self._send({"type": "init", "source": source, "args": args})
        self._reader = threading.Thread(target=self._read, args=(events,), daemon=True)
        self._reader.start()

    def run(self, slice_number: int, datum: Any) -> None:
        with contextlib.suppress(OSError):  # a dead process: its reader reports the exit
            self._send({"type": "slice", "slice": slice_number, "datum": datum})

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(5)
        self._reader.join(5)  # it closes stdout at its end (see PythonWorker.stop)
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()

    def _send(self, message: Message) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(message) + "\n")
        self._process.stdin.flush()

    def _read(self, events: Events) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        try:
            for line in stdout:
                events.put((self, json.loads(line)))
        except (OSError, ValueError):
            pass
        finally:
            events.put((self, {"type": "exit"}))
            stdout.close()


class _Running:
    """A slice on a worker, and when it last showed progress (None: not started yet)."""

    def __init__(self, slice_number: int) -> None:
        self.slice_number = slice_number
        self.alive_at: float | None = None


class LocalRun:
    """One local_exec(): the workers and the loop that feeds them."""

    def __init__(self, job: Job, cores: int, bar: ProgressBar) -> None:
        assert job.input is not None and job.work is not None
        self.job = job
        self.work = job.work
        self.cores = cores
        self.bar = bar
        self.timeout = float(job.progress_timeout)
        self.events: Events = queue.Queue()
        self.feed: Iterator[Any] = job.input.iter_data()
        self.fed = 0
        self.exhausted = False
        self.retry: deque[tuple[int, Any]] = deque()
        self.data: dict[int, Any] = {}
        self.errors: dict[int, int] = {}
        self.stalls: dict[int, int] = {}
        self.results: dict[int, Any] = {}
        self.workers: dict[LocalWorker, _Running | None] = {}
        self.console = ConsoleCollapser(job.emit)
        self.node = _node_path() if self.work["language"] == "js" else None

    def run(self) -> dict[int, Any]:
        """Every slice's result by slice number; DCPError when the job fails."""
        try:
            for _ in range(self.cores):
                self._start_worker()
            while self._assign() or any(self.workers.values()):
                self._handle_next_message()
                self._stop_stalled_slices()
        finally:
            self.console.flush()
            for worker in list(self.workers):
                worker.stop()
        return self.results

    def _start_worker(self) -> None:
        source, args = self.work["source"], self.job.args
        worker: LocalWorker
        if self.node is not None:
            worker = NodeWorker(self.node, source, args, self.events)
        else:
            worker = PythonWorker(source, args, self.events)
        self.workers[worker] = None

    def _replace(self, worker: LocalWorker) -> None:
        worker.stop()
        del self.workers[worker]
        self._start_worker()

    def _assign(self) -> bool:
        """Give idle workers slices; False once nothing is left to hand out."""
        for worker, running in list(self.workers.items()):
            if running is None:
                task = self._next_slice()
                if task is None:
                    return False
                self.workers[worker] = _Running(task[0])
                worker.run(*task)
        return True

    def _next_slice(self) -> tuple[int, Any] | None:
        if self.retry:
            return self.retry.popleft()
        if self.exhausted:
            return None
        datum = next(self.feed, _END)
        if datum is _END:
            self.exhausted = True
            return None
        self.fed += 1
        self.data[self.fed] = datum
        self.bar.set_total(max(self.fed, self.job.total))
        return self.fed, datum

    def _handle_next_message(self) -> None:
        try:
            worker, message = self.events.get(timeout=WAIT_S)
        except queue.Empty:
            return
        running = self.workers.get(worker)
        if worker not in self.workers:
            return  # a stopped worker's last words
        kind = message.get("type")
        if kind in ("started", "progress") and running is not None:
            running.alive_at = time.monotonic()
        elif kind == "console":
            self.console.add(str(message["level"]), str(message["message"]), message["slice"])
        elif kind in ("result", "error", "exit") and running is not None:
            self.workers[worker] = None
            if kind == "result":
                self._on_result(running.slice_number, message["value"])
            else:
                self._on_error(running.slice_number, message)
            if kind == "exit":
                self._replace(worker)

    def _on_result(self, slice_number: int, value: Any) -> None:
        self.results[slice_number] = value
        self.bar.advance()
        self.job.emit("result", {"slice": slice_number, "value": value})
        self.job.emit("status", self._status())

    def _on_error(self, slice_number: int, message: Message) -> None:
        error = {
            "slice": slice_number,
            "name": str(message.get("name") or "WorkerExit"),
            "message": str(message.get("message") or "the worker process exited"),
            "traceback": str(message.get("traceback") or ""),
        }
        self.job.emit("error", slice_event(error))
        self.errors[slice_number] = self.errors.get(slice_number, 0) + 1
        if self.errors[slice_number] >= MAX_ATTEMPTS:
            why = f"{error['name']}: {error['message']}"
            self._fail(
                "ETOOMANYERRORS",
                f"slice {slice_number} failed {MAX_ATTEMPTS} times: {why}",
                slice_number=slice_number,
                traceback=error["traceback"],
            )
        self.retry.append((slice_number, self.data[slice_number]))

    def _stop_stalled_slices(self) -> None:
        now = time.monotonic()
        for worker, running in list(self.workers.items()):
            alive_at = running.alive_at if running is not None else None
            if running is not None and alive_at is not None and now - alive_at > self.timeout:
                self._replace(worker)
                self._on_stall(running.slice_number)

    def _on_stall(self, slice_number: int) -> None:
        seconds = self.timeout if self.timeout % 1 else int(self.timeout)
        self.job.emit("noprogress", slice_event({"slice": slice_number, "seconds": seconds}))
        self.stalls[slice_number] = self.stalls.get(slice_number, 0) + 1
        if self.stalls[slice_number] >= MAX_ATTEMPTS:
            reason = f"slice {slice_number} made no progress for {seconds} s twice"
            self._fail("ENOPROGRESS", reason, slice_number=slice_number)
        self.retry.append((slice_number, self.data[slice_number]))

    def _fail(self, code: str, reason: str, **details: Any) -> None:
        self.console.flush()
        self.job.set_state("cancelled")
        self.job.emit("cancel", {"code": code, "reason": reason})
        raise DCPError(code, reason, **details)

    def _status(self) -> dict[str, Any]:
        return {
            "total": max(self.fed, self.job.total),
            "distributed": self.fed,
            "computed": len(self.results),
            "failed": 0,
            "status": "running",
        }


_END = object()


def run_local(job: Job, *, cores: int, progress_bar: ProgressBarOption) -> ResultHandle:
    """Run every slice of `job` on `cores` local worker processes; returns the results."""
    from .results import ResultHandle

    if job.input is None or job.work is None:
        raise DCPError("EINVALID", "an attached job cannot run locally: its work is not known")
    if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
        raise DCPError("EINVALID", f"cores must be a whole number of at least 1, not {cores!r}")
    job.set_state("exec")
    bar = ProgressBar(progress_bar, job.total or None, "local job")
    try:
        job.set_state("init")
        results = LocalRun(job, cores, bar).run()
    finally:
        bar.close()
    job.total = len(results)
    job.emit("status", _final_status(len(results)))
    job.set_state("complete")
    job.emit("complete", {"total": len(results)})
    job.results = ResultHandle(results.items(), job.input_view())
    return job.results


def _final_status(total: int) -> dict[str, Any]:
    return {
        "total": total,
        "distributed": total,
        "computed": total,
        "failed": 0,
        "status": "finished",
    }


def _node_path() -> str:
    node = shutil.which("node")
    if node is None:
        raise DCPError(
            "ENONODE", "local_exec of a JavaScript job needs node on PATH (https://nodejs.org)"
        )
    return node
