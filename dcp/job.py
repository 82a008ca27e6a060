"""A job: built by compute_for(), deployed and followed to its end by exec().

exec() keeps one client socket open while the job runs. If the socket drops, it reconnects
with exponential backoff, deploys again with the same `ref` (the scheduler answers with the
job it already has) and subscribes, so a job survives a restart of the scheduler. Results
are fetched with `results` requests once the job is complete: events only wake us up.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .config import client_socket_url
from .connection import ConnectionLost, Frame, Session
from .errors import DCPError
from .inputs import InputSet
from .keys import KeySpec, signing_key
from .keystore import address_of
from .payment import credits_text, job_hash, parse_offer, payment
from .results import ResultHandle

__all__ = ["EVENTS", "Job"]

EVENTS = ("accepted", "status", "result", "console", "error", "complete", "cancel")
MAX_FRAME_BYTES = 4 * 1024 * 1024  # the scheduler closes the socket on a larger frame
RESULTS_PAGE = 10_000  # the most slices one `results` request may ask for
POLL_INTERVAL_S = 15.0  # events are best-effort: after this much silence, ask for the status
CANCEL_EVENT_WAIT_S = 2.0  # a late subscribe to a cancelled job is followed by its cancel event
RECONNECT_FIRST_DELAY_S = 0.25
RECONNECT_MAX_DELAY_S = 5.0
RECONNECT_GIVE_UP_S = 60.0

Callback = Callable[[Any], object]


class Job:
    """A work function and an input set, ready to deploy with exec().

    `job.on(event, callback)` follows the job: `accepted`, `status`, `result` (once per slice,
    with `{"slice": n, "value": v}`), `console`, `error`, `complete` and `cancel`; each callback
    gets the event's data. `job.public = {"name": ...}` names the job on the portal. `job.id`
    is set once the scheduler accepts the job.
    """

    def __init__(self, input_set: InputSet, work: dict[str, str], args: list[Any]) -> None:
        self.input = input_set
        self.work = work
        self.args = args
        self.ref = str(uuid.uuid4())  # the same on every deploy of this job: deploy is idempotent
        self.id: str | None = None
        self.total = input_set.total
        self.public: dict[str, Any] | None = None
        self.status: dict[str, Any] = {}
        self._callbacks: dict[str, list[Callback]] = {name: [] for name in EVENTS}

    def on(self, event: str, callback: Callback) -> Job:
        """Call `callback(data)` on every `event` of this job; returns the job for chaining."""
        if event not in self._callbacks:
            raise DCPError("EINVALID", f"unknown event {event!r}: use one of {', '.join(EVENTS)}")
        if not callable(callback):
            raise DCPError("EINVALID", "the callback must be callable")
        self._callbacks[event].append(callback)
        return self

    def exec(
        self,
        slice_payment_offer: str | Decimal | int | float = "0.001",
        account: KeySpec = None,
        identity: KeySpec = None,
    ) -> ResultHandle:
        """Deploy the job, wait until every slice has a result, and return the results.

        `account` pays (default: `default.keystore` in the DCP home) and `identity` says who
        deploys (default: `id.keystore`). Raises DCPError when the scheduler refuses the job,
        when the job is cancelled, or when the scheduler stays unreachable.
        """
        offer = parse_offer(slice_payment_offer)
        identity_key = signing_key(identity, "identity")
        account_key = signing_key(account, "account")
        deploy = self.deploy_frame(offer, account_key)
        return _Execution(self, deploy, identity_key, client_socket_url()).run()

    def deploy_frame(self, offer: Decimal, account_key: bytes) -> Frame:
        """The `deploy` request for this job, its payment signed by `account_key`."""
        offer_text = credits_text(offer)
        input_wire = self.input.wire()
        digest = job_hash(
            ref=self.ref, work=self.work, args=self.args, input=input_wire, offer=offer_text
        )
        frame: Frame = {
            "type": "deploy",
            "ref": self.ref,
            "work": self.work,
            "args": self.args,
            "input": input_wire,
            "slice_payment_offer": offer_text,
            "payment": payment(
                account_key=account_key,
                account=address_of(account_key),
                job_hash_hex=digest,
                offer=offer,
                total=self.input.total,
            ),
        }
        if self.public:
            frame["public"] = _public(self.public)
        _check_frame_size(frame)
        return frame

    def emit(self, event: str, data: Any) -> None:
        """Call the callbacks registered for `event` with `data`."""
        for callback in self._callbacks[event]:
            callback(data)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, ref={self.ref!r}, slices={self.total})"


class _Execution:
    """One exec(): the socket loop, reconnects included."""

    def __init__(self, job: Job, deploy: Frame, identity_key: bytes, url: str) -> None:
        self.job = job
        self.deploy = deploy
        self.identity_key = identity_key
        self.url = url
        self.deployed = job.id is not None  # exec() again: the job exists, catch up on it
        self.finished = False
        self.seen: set[int] = set()
        self.last_error: dict[str, Any] | None = None
        self.complete_data: Any = None

    def run(self) -> ResultHandle:
        backoff = _Backoff(self.url)
        while True:
            try:
                with Session.open(self.url, self.identity_key) as session:
                    return self._follow(session, backoff)
            except ConnectionLost as exc:
                backoff.wait(exc)

    def _follow(self, session: Session, backoff: _Backoff) -> ResultHandle:
        self._accept(session.request(self.deploy, self._on_frame))
        backoff.reset()
        if self.deployed:
            self._subscribe(session)  # a redeploy: catch up on what happened meanwhile
        self.deployed = True
        while not self.finished:
            frame = session.receive(POLL_INTERVAL_S)
            if frame is None:
                self._subscribe(session)
            else:
                self._on_frame(frame)
        return self._collect(session)

    def _accept(self, reply: Frame) -> None:
        job_id, total = reply.get("job"), reply.get("total")
        if not isinstance(job_id, str) or not isinstance(total, int):
            raise DCPError("EPROTOCOL", f"unexpected reply to deploy: {json.dumps(reply)[:200]}")
        self.job.total = total
        if self.job.id is None:
            self.job.id = job_id
            self.job.emit("accepted", {"job": job_id, "total": total})

    def _subscribe(self, session: Session) -> None:
        reply = session.request({"type": "subscribe", "job": self.job.id}, self._on_frame)
        status = reply.get("status")
        if isinstance(status, dict):
            self._on_status(status)
            if status.get("status") == "cancelled":
                self._read_events(session, CANCEL_EVENT_WAIT_S)  # its cancel event has the code
                raise self._cancelled(status)

    def _read_events(self, session: Session, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            frame = session.receive(left)
            if frame is None:
                return
            self._on_frame(frame)

    def _on_frame(self, frame: Frame) -> None:
        if frame.get("type") != "event":
            return
        if self.job.id is not None and frame.get("job") != self.job.id:
            return
        event, data = frame.get("event"), frame.get("data")
        if event == "status" and isinstance(data, dict):
            self._on_status(data)
        elif event == "result" and isinstance(data, list):
            self._on_results(data)
        elif event == "console":
            self.job.emit("console", data)
        elif event == "error" and isinstance(data, dict):
            self.last_error = data
            self.job.emit("error", data)
        elif event == "complete":
            self.finished = True
            self.complete_data = data
        elif event == "cancel":
            self.job.emit("cancel", data)
            raise self._cancelled(data if isinstance(data, dict) else {})

    def _on_status(self, status: dict[str, Any]) -> None:
        self.job.status = status
        self.job.emit("status", status)
        computed, total = status.get("computed"), status.get("total")
        done = isinstance(computed, int) and isinstance(total, int) and computed >= total > 0
        if status.get("status") == "finished" or done:
            self.finished = True

    def _on_results(self, items: list[Any]) -> None:
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("slice"), int):
                self._emit_result(item["slice"], item.get("value"))

    def _emit_result(self, slice_number: int, value: Any) -> None:
        if slice_number not in self.seen:
            self.seen.add(slice_number)
            self.job.emit("result", {"slice": slice_number, "value": value})

    def _cancelled(self, data: dict[str, Any]) -> DCPError:
        code = str(data.get("code") or "ECANCELLED")
        reason = str(data.get("reason") or "the job was cancelled")
        error = self.last_error if code != "ECANCELLED" else None
        if error is None:
            return DCPError(code, reason)
        return DCPError(
            code,
            f"{reason}: {error.get('name', 'Error')}: {error.get('message', '')}",
            slice_number=error.get("slice"),
            traceback=error.get("traceback"),
        )

    def _collect(self, session: Session) -> ResultHandle:
        entries: list[tuple[int, Any]] = []
        start = 1
        while start <= self.job.total:
            end = min(start + RESULTS_PAGE - 1, self.job.total)
            request = {"type": "results", "job": self.job.id, "start": start, "end": end}
            page = _results_page(session.request(request, self._on_frame))
            if not page:
                break
            entries.extend(page)
            start = max(number for number, _ in page) + 1  # a server may send a shorter page
        _check_complete(entries, self.job.total)
        for slice_number, value in sorted(entries, key=lambda entry: entry[0]):
            self._emit_result(slice_number, value)
        self.job.emit("complete", self.complete_data or {"total": self.job.total})
        return ResultHandle(entries, self.job.input.datum)


class _Backoff:
    """Waits between reconnects: 0.25 s doubling to 5 s, giving up after about a minute."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.reset()

    def reset(self) -> None:
        self.delay = RECONNECT_FIRST_DELAY_S
        self.since: float | None = None

    def wait(self, cause: ConnectionLost) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now
        if now - self.since + self.delay > RECONNECT_GIVE_UP_S:
            raise DCPError(
                "ENOCONNECTION",
                f"cannot reach the scheduler at {self.url} "
                f"(gave up after {RECONNECT_GIVE_UP_S:.0f} s): {cause}",
            ) from cause
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, RECONNECT_MAX_DELAY_S)


def _results_page(reply: Frame) -> list[tuple[int, Any]]:
    rows = reply.get("results")
    if not isinstance(rows, list):
        raise DCPError("EPROTOCOL", "the scheduler's results reply has no results list")
    page = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 2 and isinstance(row[0], int)):
            raise DCPError("EPROTOCOL", f"malformed result row {json.dumps(row)[:100]}")
        page.append((row[0], row[1]))
    return page


def _check_complete(entries: list[tuple[int, Any]], total: int) -> None:
    numbers = {number for number, _ in entries}
    if len(entries) != total or numbers != set(range(1, total + 1)):
        missing = sorted(set(range(1, total + 1)) - numbers)[:10]
        raise DCPError(
            "EPROTOCOL",
            f"the job is complete but the scheduler returned {len(entries)} of {total} "
            f"results (missing slices {missing})",
        )


def _public(public: Any) -> dict[str, str]:
    """The job's public description: text only, as the scheduler stores it."""
    valid = isinstance(public, dict) and all(
        isinstance(key, str) and isinstance(value, str) for key, value in public.items()
    )
    if not valid:
        raise DCPError(
            "EINVALID", 'job.public must be a dict of strings such as {"name": "my job"}'
        )
    return dict(public)


def _check_frame_size(frame: Frame) -> None:
    size = len(json.dumps(frame).encode("utf-8"))
    if size > MAX_FRAME_BYTES - 64:  # leave room for the request id
        raise DCPError(
            "EINVALID",
            f"the job is {size / 2**20:.1f} MiB, over the scheduler's {MAX_FRAME_BYTES // 2**20} "
            "MiB frame limit: use a range, smaller values, or several jobs",
        )
