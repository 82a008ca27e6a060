"""One exec(): the client socket that deploys a job, uploads its input, and follows it.

exec() keeps one socket open while the job runs. If the socket drops, it reconnects with
exponential backoff, deploys again with the same `ref` (the scheduler answers with the job it
already has), resends the batch it was uploading (a batch `ref` makes that a no-op) and
subscribes, so a job survives a restart of the scheduler. Results are fetched with `results`
requests once the job is complete: events only wake us up.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import client
from .client import Remote, add_slices_frame, batches
from .connection import Backoff, ConnectionLost, Frame, Session
from .errors import DCPError
from .events import ConsoleCollapser, ProgressBar, slice_event
from .inputs import StreamInput
from .results import ResultHandle, fetch_pages

if TYPE_CHECKING:
    from .job import Job

__all__ = ["Execution"]

POLL_INTERVAL_S = 15.0  # events are best-effort: after this much silence, ask for the status
CANCEL_EVENT_WAIT_S = 2.0  # a late subscribe to a cancelled job is followed by its cancel event
STOP_CHECK_S = 0.5  # how often a wait looks whether exec_async's caller gave up
STREAM_BATCH_SECONDS = 1.0  # a slow generator's values are sent at least this often


class Abandoned(Exception):
    """exec_async's caller was cancelled: stop following the job (it keeps running)."""


class Execution:
    """Deploys (unless attached), uploads, follows and collects one job."""

    def __init__(
        self,
        job: Job,
        *,
        deploy: Frame | None,
        identity_key: bytes,
        account_key: bytes | None,
        offer: Decimal | None,
        url: str,
        bar: ProgressBar,
    ) -> None:
        self.job = job
        self.deploy = deploy
        self.identity_key = identity_key
        self.account_key = account_key
        self.offer = offer
        self.url = url
        self.bar = bar
        self.resumed = job.id is not None  # exec() again, or attached: catch up on the job
        self.deployed_once = False
        self.streaming = isinstance(job.input, StreamInput) and bool(deploy and deploy.get("open"))
        self.must_close = bool(deploy and deploy.get("open")) and job.auto_close
        self.pending_batch: Frame | None = None  # sent, not acknowledged: resent on reconnect
        self.pending_record = False
        self.user_values: list[Any] = []  # add_slices() before the job had an id
        self.cancel_reason: str | None = None
        self.finished = False
        self.seen: set[int] = set()
        self.received: dict[int, Any] = {}  # results that came with events, by slice
        self.last_error: dict[str, Any] | None = None
        self.last_noprogress: dict[str, Any] | None = None
        self.complete_data: Any = None
        self.console = ConsoleCollapser(job.emit)

    def run(self) -> ResultHandle:
        """Follow the job to its end and return its results; DCPError when it fails."""
        backoff = Backoff(self.url)
        try:
            while True:
                try:
                    with Session.open(self.url, self.identity_key) as session:
                        return self._follow(session, backoff)
                except ConnectionLost as exc:
                    backoff.wait(exc)
        finally:
            self.console.flush()

    def _follow(self, session: Session, backoff: Backoff) -> ResultHandle:
        if self.deploy is not None:
            if not self.deployed_once:
                self.job.set_state("deploying")
            self._accept(session.request(self.deploy, self._on_frame))
        backoff.reset()
        if self.resumed or self.deploy is None:
            self._subscribe(session)  # a redeploy or an attached job: catch up
        if not self.deployed_once and self.deploy is not None and not self.streaming:
            self.job.set_state("deployed")
        self.deployed_once = self.resumed = True
        self._send_outstanding(session)
        while not self.finished:
            frame = self._next_frame(session)
            if frame is None:
                self._subscribe(session)
            else:
                self._on_frame(frame)
        return self._collect(session)

    # --- deploy and upload ----------------------------------------------------------------

    def _accept(self, reply: Frame) -> None:
        job_id, total = reply.get("job"), reply.get("total")
        if not isinstance(job_id, str) or not isinstance(total, int):
            raise DCPError("EPROTOCOL", f"unexpected reply to deploy: {json.dumps(reply)[:200]}")
        first_time = self.job.id is None
        requests = self.job.accepted(job_id)
        self.user_values.extend(requests.values)
        deployed_open = bool(self.deploy and self.deploy.get("open"))
        self.must_close = self.must_close or (requests.close and deployed_open)
        if requests.cancel_reason is not None:
            self.cancel_reason = requests.cancel_reason
        self._set_total(total)
        if first_time:
            self.job.emit("accepted", {"job": job_id, "total": total})

    def _send_outstanding(self, session: Session) -> None:
        """What the job still needs sent: a cancel, the stream's batches, values added before
        the job had an id, and the close."""
        if self.cancel_reason is not None:
            cancel = {"type": "cancel", "job": self.job.id, "reason": self.cancel_reason}
            session.request(cancel, self._on_frame)
            self.cancel_reason = None
            return  # its cancel event ends the job
        if self.pending_batch is not None:
            self._send_batch(session, self.pending_batch, record=self.pending_record)
        if self.streaming:
            self._upload_stream(session)
        while self.user_values:
            batch = batches(self.user_values[: client.BATCH_VALUES])[0]
            self._send_batch(session, self._batch_frame(batch), record=True)
            del self.user_values[: len(batch)]
        if self.must_close:
            reply = session.request({"type": "close", "job": self.job.id}, self._on_frame)
            self.must_close = False
            if isinstance(reply.get("total"), int):
                self._set_total(reply["total"])
            self.job.set_state("closed")

    def _upload_stream(self, session: Session) -> None:
        stream = self.job.input
        assert isinstance(stream, StreamInput)
        if not stream.exhausted:
            self.job.set_state("uploading")
        while batch := stream.next_batch(
            client.BATCH_VALUES, client.BATCH_BYTES, STREAM_BATCH_SECONDS
        ):
            self._send_batch(session, self._batch_frame(batch), record=False)
        self.streaming = False
        self.job.set_state("deployed")

    def _batch_frame(self, values: list[Any]) -> Frame:
        if self.account_key is None or self.offer is None or self.job.id is None:
            raise DCPError("EINVALID", "adding slices needs the paying account and the offer")
        return add_slices_frame(self.job.id, values, offer=self.offer, account_key=self.account_key)

    def _send_batch(self, session: Session, frame: Frame, *, record: bool) -> None:
        """Send one add_slices batch; `record` its inputs for key() (a stream keeps its own)."""
        self.pending_batch, self.pending_record = frame, record
        reply = session.request(frame, self._on_frame)
        self.pending_batch = None
        total = reply.get("total")
        if not isinstance(total, int):
            raise DCPError("EPROTOCOL", "the scheduler's reply to add_slices has no total")
        if record:
            self.job.record_added(total - len(frame["values"]) + 1, frame["values"])
        self._set_total(total)

    # --- events ---------------------------------------------------------------------------

    def _next_frame(self, session: Session) -> Frame | None:
        """The next frame, or None after POLL_INTERVAL_S of silence."""
        deadline = time.monotonic() + POLL_INTERVAL_S
        while (left := deadline - time.monotonic()) > 0:
            if self.job.stop_requested():
                raise Abandoned
            frame = session.receive(min(left, STOP_CHECK_S))
            if frame is not None:
                return frame
        return None

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
        if frame.get("job") != self.job.id:
            return  # another job's event (a reused session), or one before `accepted`
        event, data = frame.get("event"), frame.get("data")
        if event == "status" and isinstance(data, dict):
            self._on_status(data)
        elif event == "result" and isinstance(data, list):
            self._on_results(data)
        elif event == "console":
            self.console.add_event(data)
        elif event == "error":
            self.last_error = slice_event(data)
            self.job.emit("error", self.last_error)
        elif event == "noprogress":
            self.last_noprogress = slice_event(data)
            self.job.emit("noprogress", self.last_noprogress)
        elif event == "complete":
            self.finished = True
            self.complete_data = data
            if isinstance(data, dict) and isinstance(data.get("total"), int):
                self._set_total(data["total"])
        elif event == "cancel":
            self._on_cancel(data if isinstance(data, dict) else {})

    def _on_status(self, status: dict[str, Any]) -> None:
        self.job.status = status
        if isinstance(status.get("total"), int):
            self._set_total(status["total"])
        self.job.emit("status", status)
        computed, total = status.get("computed"), status.get("total")
        done = isinstance(computed, int) and isinstance(total, int) and computed >= total > 0
        still_open = status.get("open", self.streaming or self.must_close)
        state = status.get("status")
        if state == "finished" or (done and not still_open and state != "cancelled"):
            self.finished = True

    def _on_results(self, items: list[Any]) -> None:
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("slice"), int):
                self._emit_result(item["slice"], item.get("value"))

    def _emit_result(self, slice_number: int, value: Any) -> None:
        if slice_number not in self.seen:
            self.seen.add(slice_number)
            self.received[slice_number] = value
            self.bar.advance()
            self.job.emit("result", {"slice": slice_number, "value": value})

    def _on_cancel(self, data: dict[str, Any]) -> None:
        self.console.flush()
        self.job.set_state("cancelled")
        self.job.emit("cancel", data)
        raise self._cancelled(data)

    def _cancelled(self, data: dict[str, Any]) -> DCPError:
        code = str(data.get("code") or "ECANCELLED")
        reason = str(data.get("reason") or "the job was cancelled")
        if code == "ENOPROGRESS" and self.last_noprogress is not None:
            return DCPError(code, reason, slice_number=self.last_noprogress.get("slice"))
        error = self.last_error if code != "ECANCELLED" else None
        if error is None:
            return DCPError(code, reason)
        return DCPError(
            code,
            f"{reason}: {error.get('name', 'Error')}: {error.get('message', '')}",
            slice_number=error.get("slice"),
            traceback=error.get("traceback"),
        )

    def _set_total(self, total: int) -> None:
        self.job.total = total
        self.bar.set_total(total)

    # --- results --------------------------------------------------------------------------

    def _collect(self, session: Session) -> ResultHandle:
        assert self.job.id is not None
        total = self.job.total
        if len(self.received) == total:  # every result came with the events: no fetch
            entries = sorted(self.received.items())
        else:
            entries = fetch_pages(
                lambda frame: session.request(frame, self._on_frame), self.job.id, 1, total
            )
        _check_complete(entries, total)
        for slice_number, value in sorted(entries, key=lambda entry: entry[0]):
            self._emit_result(slice_number, value)
        self.console.flush()
        self.job.set_state("complete")
        self.job.emit("complete", self.complete_data or {"total": total})
        remote = Remote(self.url, self.identity_key)
        job_id = self.job.id
        return ResultHandle(
            entries,
            self.job.input_view(),
            fetcher=lambda first, last: remote.fetch(job_id, first, last),
        )


def _check_complete(entries: list[tuple[int, Any]], total: int) -> None:
    numbers = {number for number, _ in entries}
    if len(entries) != total or numbers != set(range(1, total + 1)):
        missing = sorted(set(range(1, total + 1)) - numbers)[:10]
        raise DCPError(
            "EPROTOCOL",
            f"the job is complete but the scheduler returned {len(entries)} of {total} "
            f"results (missing slices {missing})",
        )
