"""Local execution: the slices of a job computed by worker processes on this machine.

The loop here plays the scheduler: it hands one slice at a time to each idle local worker (a
process started as its work-function runtime says, see runtimes.py) and applies the network's
failure rules (dcp.protocol.policy): a slice that raises is retried once, then the job fails
with ETOOMANYERRORS; a slice that runs `progress_timeout` seconds without calling progress() is
stopped (its worker is replaced), retried once, then the job fails with ENOPROGRESS.

A job that asks for verification (a protocol `Verify`) has each slice computed by `quorum`
distinct local workers and their results voted on with dcp.protocol.verify, as the scheduler
does: a disagreement sends the slice to further workers (a fresh process when every worker has
computed it) up to `max_results` results, then the job fails with ENOQUORUM. Every slice is
replicated, adaptive or not: local workers have no history to trust.

It knows nothing of the client's job handle: it takes plain inputs and reports through
`emit(event, data)` with the protocol's event data (`result`, `status`, `console`, `error`,
`noprogress`, `duplicate-result`, `cancel`); dcp/client/local.py turns those into a job's
events.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dcp.errors import DCPError
from dcp.protocol import policy
from dcp.protocol.messages import Verify
from dcp.protocol.verify import NO_QUORUM, NO_QUORUM_ERROR_NAME, Vote, no_quorum_reason, vote

from .packages import (
    UnsafeJobFiles,
    UnsafeWheel,
    remove_job_files,
    unpack_job_files,
    unpack_wheels,
)
from .runtimes import RUNTIMES, LocalWorkerCommand

__all__ = ["LocalJob", "check_cores", "run_slices"]

WAIT_S = 0.05  # how often the loop looks at progress deadlines
Message = dict[str, Any]
Emit = Callable[[str, Any], None]
_END = object()


@dataclass
class LocalJob:
    """What local execution needs of a job."""

    language: str
    source: str
    args: list[Any]
    data: Iterator[Any]  # the slices' data, in slice order
    progress_timeout: float
    total: int = 0  # slices known before the data is read (0: not known)
    verify: Verify | None = None  # result verification: each slice computed `quorum` times
    # The job's wheels, (file name, sha256, bytes) each: installed for its workers to import.
    packages: list[tuple[str, str, bytes]] = field(default_factory=list)
    # The job's files (job.fs): (sha256, zip archive bytes), unpacked as the workers' directory.
    files: tuple[str, bytes] | None = None


class LocalWorker:
    """A local worker process spoken to in JSON lines; its messages go to `events`."""

    def __init__(
        self,
        command: LocalWorkerCommand,
        job: LocalJob,
        events: Events,
        path: list[str],
        cwd: str | None = None,
    ) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - our own worker program
            command.args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=command.env,
        )
        init = {"type": "init", "source": job.source, "args": job.args, "path": path, "cwd": cwd}
        self._send(init)
        self._reader = threading.Thread(target=self._read, args=(events,), daemon=True)
        self._reader.start()

    def run(self, slice_number: int, datum: Any) -> None:
        self._send({"type": "slice", "slice": slice_number, "datum": datum})

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(5)
        # The reader closes stdout once it sees the end: closing it here, under a reader
        # blocked on it, would let the fd number be reused and read by the wrong worker.
        self._reader.join(5)
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()

    def _send(self, message: Message) -> None:
        assert self._process.stdin is not None
        with contextlib.suppress(OSError):  # a dead process: its reader reports the exit
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


Events = queue.Queue[tuple[LocalWorker, Message]]


class _Running:
    """A slice on a worker, and when it last showed progress (None: not started yet)."""

    def __init__(self, slice_number: int) -> None:
        self.slice_number = slice_number
        self.alive_at: float | None = None


class _Feed:
    """The slices to hand out: those to run again first (retries, replicas of a verified
    slice), then new ones from the data; each new slice is handed out `copies` times."""

    def __init__(self, data: Iterator[Any], copies: int = 1) -> None:
        self.data = data
        self.copies = copies
        self.fed = 0
        self.exhausted = False
        self.again_queue: deque[int] = deque()
        self.by_number: dict[int, Any] = {}

    def next(self, may_take: Callable[[int], bool] = lambda _: True) -> tuple[int, Any] | None:
        """The next slice `may_take` accepts, or None."""
        for index, slice_number in enumerate(self.again_queue):
            if may_take(slice_number):
                del self.again_queue[index]
                return slice_number, self.by_number[slice_number]
        if self.exhausted:
            return None
        datum = next(self.data, _END)
        if datum is _END:
            self.exhausted = True
            return None
        self.fed += 1
        self.by_number[self.fed] = datum
        self.again(self.fed, self.copies - 1)
        return self.fed, datum

    def again(self, slice_number: int, times: int = 1) -> None:
        self.again_queue.extend([slice_number] * times)

    def has_more(self) -> bool:
        """Whether anything may still be handed out."""
        return bool(self.again_queue) or not self.exhausted


class _Votes:
    """The results of each verified slice, voted on as the scheduler does (dcp.protocol.verify),
    and which workers computed them: a worker never computes the same slice twice."""

    def __init__(self, verify: Verify) -> None:
        self.verify = verify
        self.results: dict[int, list[Any]] = {}
        self.computed_by: dict[int, set[LocalWorker]] = {}
        self.outstanding: dict[int, int] = {}  # replicas handed out or queued, not returned
        self.decided: set[int] = set()
        self.disputed: set[int] = set()
        self.rejected = 0  # results that lost a vote

    def may_take(self, worker: LocalWorker) -> Callable[[int], bool]:
        return lambda slice_number: worker not in self.computed_by.get(slice_number, ())

    def nobody_may_take(self, queued: Iterable[int], workers: Iterable[LocalWorker]) -> bool:
        """Whether some queued slice was computed by every worker there is."""
        pool = set(workers)
        return any(pool <= self.computed_by.get(number, set()) for number in queued)

    def add(self, slice_number: int, value: Any, worker: LocalWorker) -> tuple[Vote, int] | None:
        """Count one result; the vote so far and how many more results to ask for (None: the
        slice was decided already)."""
        if slice_number in self.decided:
            return None
        results = self.results.setdefault(slice_number, [])
        results.append(value)
        self.computed_by.setdefault(slice_number, set()).add(worker)
        left = self.outstanding.get(slice_number, self.verify.quorum) - 1
        outcome = vote(results, self.verify)
        more = 0
        if outcome.accepted:
            self.decided.add(slice_number)
            self.rejected += len(outcome.losers)
        elif not outcome.exhausted and left == 0:
            # Every result asked for is in and none reached the quorum: ask for tie-breakers.
            cap = self.verify.max_results or self.verify.quorum
            more = min(self.verify.quorum - len(outcome.groups[0]), cap - len(results))
        self.outstanding[slice_number] = left + more
        if outcome.disputed:
            self.disputed.add(slice_number)
        else:
            self.disputed.discard(slice_number)
        return outcome, more

    def duplicate_result(self, slice_number: int, outcome: Vote) -> dict[str, Any]:
        """The `duplicate-result` event's data."""
        return {
            "slice": slice_number,
            "results": len(self.results[slice_number]),
            "agreeing": len(outcome.groups[0]),
            "accepted": outcome.accepted,
            "disputed": outcome.disputed,
        }

    def status(self) -> dict[str, int]:
        """The status's `verification`: slices waiting for agreement, those whose results
        disagree so far (a tie-breaker is needed), results that lost a vote."""
        return {
            "quorum": self.verify.quorum,
            "pending": len(self.results) - len(self.decided),
            "disputed": len(self.disputed),
            "rejected": self.rejected,
        }


class LocalRun:
    """One local execution: the workers and the loop that feeds them."""

    def __init__(self, job: LocalJob, cores: int, emit: Emit) -> None:
        self.job = job
        self.votes = _Votes(job.verify) if job.verify is not None else None
        copies = job.verify.quorum if job.verify is not None else 1
        self.cores = max(cores, copies)  # replicas of a slice go to distinct workers
        self.emit = emit
        self.command = RUNTIMES[job.language].local_worker
        self.events: Events = queue.Queue()
        self.feed = _Feed(job.data, copies)
        self.errors: dict[int, int] = {}
        self.stalls: dict[int, int] = {}
        self.results: dict[int, Any] = {}
        self.workers: dict[LocalWorker, _Running | None] = {}
        self.path: list[str] = []  # directories the workers import the job's packages from
        self.files: str | None = None  # the job's unpacked files: the workers' directory
        self.handlers: dict[str, Callable[[LocalWorker, _Running | None, Message], None]] = {
            "started": self._on_alive,
            "progress": self._on_alive,
            "console": self._on_console,
            "result": self._on_reply,
            "error": self._on_reply,
            "exit": self._on_reply,
        }

    def run(self) -> dict[int, Any]:
        """Every slice's result by slice number; DCPError when the job fails."""
        try:
            self._install_packages()
            self._unpack_files()
            for _ in range(self.cores):
                self._start_worker()
            while self._assign() or any(self.workers.values()):
                self._handle_next_message()
                self._stop_stalled_slices()
        finally:
            for worker in list(self.workers):
                worker.stop()
            for place in self.path:
                shutil.rmtree(place, ignore_errors=True)
            if self.files:
                remove_job_files(self.files)
        return self.results

    def _install_packages(self) -> None:
        """Unpack the job's wheels into a throwaway directory, checked as a sandbox checks
        them (dcp.runtime.packages), for every worker to put first on its sys.path."""
        if not self.job.packages:
            return
        place = tempfile.mkdtemp(prefix="dcp-job-packages-")
        self.path.append(place)
        try:
            unpack_wheels(place, self.job.packages)
        except UnsafeWheel as error:
            raise DCPError("EUNSAFEWHEEL", str(error)) from None

    def _unpack_files(self) -> None:
        """Unpack the job's files read-only into a throwaway directory, checked as a sandbox
        checks them, for every worker to run in."""
        if self.job.files is None:
            return
        self.files = tempfile.mkdtemp(prefix="dcp-job-files-")
        sha256, data = self.job.files
        try:
            unpack_job_files(self.files, data, sha256)
        except UnsafeJobFiles as error:
            raise DCPError("EUNSAFEFILES", str(error)) from None

    def _start_worker(self) -> LocalWorker:
        worker = LocalWorker(self.command(), self.job, self.events, self.path, self.files)
        self.workers[worker] = None
        return worker

    def _replace(self, worker: LocalWorker) -> LocalWorker:
        worker.stop()
        del self.workers[worker]
        return self._start_worker()

    def _assign(self) -> bool:
        """Give idle workers slices; False once nothing is left to hand out."""
        for worker, running in list(self.workers.items()):
            if running is None:
                self._give_task(worker)
        return self.feed.has_more()

    def _give_task(self, worker: LocalWorker) -> None:
        if self.votes is None:
            task = self.feed.next()
        else:
            task = self.feed.next(self.votes.may_take(worker))
            if task is None and self.votes.nobody_may_take(self.feed.again_queue, self.workers):
                worker = self._replace(worker)  # a fresh worker for a further result
                task = self.feed.next()
        if task is not None:
            self.workers[worker] = _Running(task[0])
            worker.run(*task)

    def _handle_next_message(self) -> None:
        try:
            worker, message = self.events.get(timeout=WAIT_S)
        except queue.Empty:
            return
        if worker not in self.workers:
            return  # a stopped worker's last words
        handler = self.handlers.get(str(message.get("type")))
        if handler is not None:
            handler(worker, self.workers[worker], message)

    def _on_alive(self, worker: LocalWorker, running: _Running | None, message: Message) -> None:
        if running is not None:
            running.alive_at = time.monotonic()

    def _on_console(self, worker: LocalWorker, running: _Running | None, message: Message) -> None:
        self.emit("console", {k: message.get(k) for k in ("slice", "level", "message")})

    def _on_reply(self, worker: LocalWorker, running: _Running | None, message: Message) -> None:
        if running is None:
            return
        self.workers[worker] = None
        if message["type"] == "result" and self.votes is not None:
            self._on_verified_result(running.slice_number, message["value"], worker)
        elif message["type"] == "result":
            self._on_result(running.slice_number, message["value"])
        else:
            self._on_error(running.slice_number, message)
        if message["type"] == "exit":
            self._replace(worker)

    def _on_result(self, slice_number: int, value: Any) -> None:
        self.results[slice_number] = value
        self.emit("result", {"slice": slice_number, "value": value})
        self.emit("status", self._status())

    def _on_verified_result(self, slice_number: int, value: Any, worker: LocalWorker) -> None:
        assert self.votes is not None
        counted = self.votes.add(slice_number, value, worker)
        if counted is None:
            return  # a result after the vote was decided
        outcome, more = counted
        results = self.votes.results[slice_number]
        if len(results) > 1:
            self.emit("duplicate-result", self.votes.duplicate_result(slice_number, outcome))
        if outcome.winners is not None:
            self._on_result(slice_number, results[outcome.winners[0]])
            return
        if outcome.exhausted:
            self._no_quorum(slice_number, len(results), self.votes.verify)
        self.feed.again(slice_number, more)
        self.emit("status", self._status())

    def _no_quorum(self, slice_number: int, results: int, verify: Verify) -> None:
        reason = no_quorum_reason(slice_number, results, verify)
        error = {"slice": slice_number, "name": NO_QUORUM_ERROR_NAME, "message": reason}
        self.emit("error", {**error, "traceback": ""})
        self._fail(NO_QUORUM, reason, slice_number=slice_number)

    def _on_error(self, slice_number: int, message: Message) -> None:
        name = str(message.get("name") or "WorkerExit")
        text = str(message.get("message") or "the worker process exited")
        trace = str(message.get("traceback") or "")
        self.emit(
            "error", {"slice": slice_number, "name": name, "message": text, "traceback": trace}
        )
        failures = self.errors[slice_number] = self.errors.get(slice_number, 0) + 1
        if policy.gives_up(failures):
            reason = policy.too_many_errors_reason(slice_number, failures, name, text)
            self._fail(policy.TOO_MANY_ERRORS, reason, slice_number=slice_number, traceback=trace)
        self.feed.again(slice_number)

    def _stop_stalled_slices(self) -> None:
        now, timeout = time.monotonic(), self.job.progress_timeout
        for worker, running in list(self.workers.items()):
            alive_at = running.alive_at if running is not None else None
            if running is not None and alive_at is not None and now - alive_at > timeout:
                self._replace(worker)
                self._on_stall(running.slice_number)

    def _on_stall(self, slice_number: int) -> None:
        timeout = self.job.progress_timeout
        seconds = timeout if timeout % 1 else int(timeout)
        self.emit("noprogress", {"slice": slice_number, "seconds": seconds})
        self.stalls[slice_number] = self.stalls.get(slice_number, 0) + 1
        if policy.gives_up(self.stalls[slice_number]):
            reason = policy.no_progress_reason(slice_number, seconds)
            self._fail(policy.NO_PROGRESS, reason, slice_number=slice_number)
        self.feed.again(slice_number)

    def _fail(self, code: str, reason: str, **details: Any) -> None:
        self.emit("cancel", {"code": code, "reason": reason})
        raise DCPError(code, reason, **details)

    def _status(self) -> dict[str, Any]:
        status = {
            "total": max(self.feed.fed, self.job.total),
            "distributed": self.feed.fed,
            "computed": len(self.results),
            "failed": 0,
            "status": "running",
        }
        if self.votes is not None:
            status["verification"] = self.votes.status()
        return status


def check_cores(cores: Any) -> None:
    """EINVALID unless `cores` is a whole number of at least 1."""
    if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
        raise DCPError("EINVALID", f"cores must be a whole number of at least 1, not {cores!r}")


def run_slices(job: LocalJob, *, cores: int, emit: Emit) -> dict[int, Any]:
    """Compute every slice of `job` on `cores` local workers; results by slice number."""
    check_cores(cores)
    if job.language not in RUNTIMES:
        raise DCPError("EINVALID", f"no local runtime for work functions in {job.language!r}")
    return LocalRun(job, cores, emit).run()
