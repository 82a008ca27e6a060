"""One exec(): the client socket that deploys a job, uploads its input, and follows it.

The blobs a deploy or a batch of values references are stored in the portal's store before the
frame is sent (dcp.client.store), so the scheduler finds them there.

exec() keeps one socket open while the job runs. If the socket drops, it reconnects with
exponential backoff, deploys again with the same `ref` (the scheduler answers with the job it
already has), resends the batch it was uploading (a batch `ref` makes that a no-op) and
subscribes, so a job survives a restart of the scheduler. Results are fetched with `results`
requests once the job is complete: events only wake us up. Events are handled by a table from
event name to handler.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..errors import DCPError
from ..protocol.messages import (
    Accepted,
    Added,
    Cancel,
    Cancelled,
    Closed,
    CloseJob,
    Event,
    JobStatus,
    SliceValue,
    Subscribe,
    Subscribed,
)
from ..protocol.verify import NO_QUORUM, NO_QUORUM_ERROR_NAME
from . import remote
from .blobs import result_value
from .connection import Backoff, ConnectionLost, Frame, Session, frame_of
from .events import ConsoleCollapser, ProgressBar, ProgressBarOption, slice_event
from .inputs import StreamInput
from .remote import Remote, add_slices_frame, batches
from .results import ResultHandle, fetch_pages
from .state import JobState
from .store import read_blob, upload_referenced

__all__ = ["Launch", "follow"]

POLL_INTERVAL_S = 15.0  # events are best-effort: after this much silence, ask for the status
CANCEL_EVENT_WAIT_S = 2.0  # a late subscribe to a cancelled job is followed by its cancel event
STOP_CHECK_S = 0.5  # how often a wait looks whether exec_async's caller gave up
STREAM_BATCH_SECONDS = 1.0  # a slow generator's values are sent at least this often

_slice_values: TypeAdapter[list[SliceValue]] = TypeAdapter(list[SliceValue])


class Abandoned(Exception):
    """exec_async's caller was cancelled (or Ctrl-C came): stop following the job."""


@dataclass
class Launch:
    """What one exec() starts from: the deploy frame (None when attached) and the job's input."""

    deploy: Frame | None
    input: Any
    auto_close: bool
    results_input: Callable[[], Any]  # the input set as the results handle sees it
    progress_bar: ProgressBarOption


def follow(state: JobState, launch: Launch) -> ResultHandle:
    """Deploy (unless attached), upload, follow the job to its end; returns its results."""
    description = f"job {state.id or state.ref[:8]}"
    bar = ProgressBar(launch.progress_bar, state.total or None, description)
    state.running = True
    try:
        state.results = Execution(state, launch, bar).run()
    finally:
        state.running = False
        bar.close()
    return state.results  # type: ignore[no-any-return]


class Execution:
    """Deploys (unless attached), uploads, follows and collects one job."""

    def __init__(self, state: JobState, launch: Launch, bar: ProgressBar) -> None:
        self.state = state
        self.launch = launch
        self.deploy = launch.deploy
        self.url = state.credentials.url or ""
        self.bar = bar
        self.resumed = state.id is not None  # exec() again, or attached: catch up on the job
        self.deployed_once = False
        deployed_open = bool(self.deploy and self.deploy.get("open"))
        self.streaming = isinstance(launch.input, StreamInput) and deployed_open
        self.must_close = deployed_open and launch.auto_close
        self.pending_batch: Frame | None = None  # sent, not acknowledged: resent on reconnect
        self.pending_record = False
        self.user_values: list[Any] = []  # add_slices() before the job had an id
        self.cancel_reason: str | None = None
        self.finished = False
        self.seen: set[int] = set()
        self.received: dict[int, Any] = {}  # results that came with events, by slice
        self.early_events: list[Event] = []  # events that came before `accepted`
        self.last_error: dict[str, Any] | None = None
        self.last_noprogress: dict[str, Any] | None = None
        self.complete_data: Any = None
        self.console = ConsoleCollapser(state.emit)
        self.handlers: dict[str, Callable[[Any], None]] = {
            "status": self._on_status,
            "result": self._on_results,
            "console": self.console.add_event,
            "error": self._on_error,
            "noprogress": self._on_noprogress,
            "duplicate-result": self._passed_on("duplicate-result"),
            "rejected": self._passed_on("rejected"),
            "complete": self._on_complete,
            "cancel": self._on_cancel,
            "estimated": self._on_estimated,
            "nofunds": self._passed_on("nofunds"),
        }

    def run(self) -> ResultHandle:
        """Follow the job to its end and return its results; DCPError when it fails."""
        backoff = Backoff(self.url)
        identity_key = self.state.credentials.identity_key
        assert identity_key is not None
        try:
            while True:
                try:
                    with Session.open(self.url, identity_key) as session:
                        return self._follow(session, backoff)
                except ConnectionLost as exc:
                    backoff.wait(exc)
        finally:
            self.console.flush()

    def _follow(self, session: Session, backoff: Backoff) -> ResultHandle:
        if self.deploy is not None:
            if not self.deployed_once:
                self.state.set_ready("deploying")
            self._upload_blobs(self.deploy)
            self._accept(session.request(self.deploy, self._on_event, Accepted))
        backoff.reset()
        if self.resumed or self.deploy is None:
            self._subscribe(session)  # a redeploy or an attached job: catch up
        if not self.deployed_once and self.deploy is not None and not self.streaming:
            self.state.set_ready("deployed")
        self.deployed_once = self.resumed = True
        self._send_outstanding(session)
        while not self.finished:
            event = self._next_event(session)
            if event is None:
                self._subscribe(session)
            else:
                self._on_event(event)
        return self._collect(session)

    # --- deploy and upload ----------------------------------------------------------------

    def _accept(self, reply: Accepted) -> None:
        first_time = self.state.id is None
        requests = self.state.accepted(reply.job)
        self.user_values.extend(requests.values)
        deployed_open = bool(self.deploy and self.deploy.get("open"))
        self.must_close = self.must_close or (requests.close and deployed_open)
        if requests.cancel_reason is not None:
            self.cancel_reason = requests.cancel_reason
        self._set_total(reply.total)
        if first_time and not (self.deploy and self.deploy.get("market_value")):
            self.state.emit("accepted", {"job": reply.job, "total": reply.total})
        early, self.early_events = self.early_events, []
        for event in early:
            self._on_event(event)

    def _on_estimated(self, data: Any) -> None:
        """A market-value job is accepted once its estimation slices have measured it."""
        self.state.emit(
            "accepted", {"job": self.state.id, "total": self.state.total, "estimate": data}
        )

    def _send_outstanding(self, session: Session) -> None:
        """What the job still needs sent: a cancel, the stream's batches, values added before
        the job had an id, and the close."""
        job_id = self._job_id()
        if self.cancel_reason is not None:
            cancel = Cancel(type="cancel", job=job_id, reason=self.cancel_reason)
            session.request(frame_of(cancel), self._on_event, Cancelled)
            self.cancel_reason = None
            return  # its cancel event ends the job
        if self.pending_batch is not None:
            self._send_batch(session, self.pending_batch, record=self.pending_record)
        if self.streaming:
            self._upload_stream(session)
        while self.user_values:
            batch = batches(self.user_values[: remote.BATCH_VALUES])[0]
            self._send_batch(session, self._batch_frame(batch), record=True)
            del self.user_values[: len(batch)]
        if self.must_close:
            close = frame_of(CloseJob(type="close", job=job_id))
            reply = session.request(close, self._on_event, Closed)
            self.must_close = False
            self._set_total(reply.total)
            self.state.set_ready("closed")

    def _upload_stream(self, session: Session) -> None:
        stream = self.launch.input
        assert isinstance(stream, StreamInput)
        if not stream.exhausted:
            self.state.set_ready("uploading")
        while batch := stream.next_batch(
            remote.BATCH_VALUES, remote.BATCH_BYTES, STREAM_BATCH_SECONDS
        ):
            self._send_batch(session, self._batch_frame(batch), record=False)
        self.streaming = False
        self.state.set_ready("deployed")

    def _batch_frame(self, values: list[Any]) -> Frame:
        credentials = self.state.credentials
        if credentials.account_key is None or credentials.offer is None or self.state.id is None:
            raise DCPError("EINVALID", "adding slices needs the paying account and the offer")
        return add_slices_frame(
            self.state.id,
            values,
            offer=credentials.offer,
            account_key=credentials.account_key,
            replicas=credentials.replicas,
        )

    def _send_batch(self, session: Session, frame: Frame, *, record: bool) -> None:
        """Send one add_slices batch; `record` its inputs for key() (a stream keeps its own)."""
        self.pending_batch, self.pending_record = frame, record
        self._upload_blobs(frame)
        total = session.request(frame, self._on_event, Added).total
        self.pending_batch = None
        if record:
            self.state.record_added(total - len(frame["values"]) + 1, frame["values"])
        self._set_total(total)

    def _upload_blobs(self, frame: Frame) -> None:
        """Store the blobs a deploy or a batch references before it leaves (each once)."""
        identity_key = self.state.credentials.identity_key
        assert identity_key is not None
        upload_referenced(self.url, identity_key, frame)

    # --- events ---------------------------------------------------------------------------

    def _next_event(self, session: Session) -> Event | None:
        """The next event of this job, or None after POLL_INTERVAL_S of silence."""
        deadline = time.monotonic() + POLL_INTERVAL_S
        while (left := deadline - time.monotonic()) > 0:
            if self.state.stop_requested():
                raise Abandoned
            frame = session.receive(min(left, STOP_CHECK_S))
            if frame is not None and frame.get("type") == "event":
                try:
                    return Event.model_validate(frame)
                except ValidationError:
                    continue  # an event of a kind this client does not know
        return None

    def _subscribe(self, session: Session) -> None:
        subscribe = frame_of(Subscribe(type="subscribe", job=self._job_id()))
        reply = session.request(subscribe, self._on_event, Subscribed)
        status = reply.status.model_dump(exclude_unset=True)
        self._on_status(status)
        if reply.status.status == "cancelled":
            self._read_events(session, CANCEL_EVENT_WAIT_S)  # its cancel event has the code
            raise self._cancelled(status)

    def _read_events(self, session: Session, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            frame = session.receive(left)
            if frame is None:
                return
            if frame.get("type") == "event":
                try:
                    self._on_event(Event.model_validate(frame))
                except ValidationError:
                    continue

    def _on_event(self, event: Event) -> None:
        if self.state.id is None and self.deploy is not None:
            # The scheduler wakes workers before it answers the deploy: this job's first events
            # may come before `accepted` names it. Kept, and handled once it does.
            self.early_events.append(event)
            return
        if event.job != self.state.id:
            return  # another job's event (a reused session)
        self.handlers[event.event](event.data)

    def _on_status(self, data: Any) -> None:
        try:
            status = JobStatus.model_validate(data)
        except ValidationError:
            return  # a status this client cannot read: the next poll asks again
        self.state.status = data
        self._set_total(status.total)
        self.state.emit("status", data)
        done = status.computed >= status.total > 0
        still_open = status.open if "open" in status.model_fields_set else self._opening()
        if status.status == "finished" or (
            done and not still_open and status.status != "cancelled"
        ):
            self.finished = True

    def _opening(self) -> bool:
        """Whether this exec() still adds to the job or closes it."""
        return self.streaming or self.must_close

    def _on_results(self, data: Any) -> None:
        try:
            items = _slice_values.validate_python(data)
        except ValidationError:
            return  # results are fetched at the end anyway
        for item in items:
            self._emit_result(item.slice, item.value)

    def _on_error(self, data: Any) -> None:
        self.last_error = slice_event(data)
        self.state.emit("error", self.last_error)

    def _on_noprogress(self, data: Any) -> None:
        self.last_noprogress = slice_event(data)
        self.state.emit("noprogress", self.last_noprogress)

    def _passed_on(self, name: str) -> Callable[[Any], None]:
        """A handler that hands the event's data to the job's callbacks as it came."""
        return lambda data: self.state.emit(name, data)

    def _on_complete(self, data: Any) -> None:
        self.finished = True
        self.complete_data = data
        if isinstance(data, dict) and isinstance(data.get("total"), int):
            self._set_total(data["total"])

    def _emit_result(self, slice_number: int, value: Any) -> None:
        if slice_number not in self.seen:
            self.seen.add(slice_number)
            self.received[slice_number] = value
            self.bar.advance()
            self.state.emit("result", {"slice": slice_number, "value": result_value(value)})

    def _on_cancel(self, data: Any) -> None:
        self.console.flush()
        self.state.set_ready("cancelled")
        self.state.emit("cancel", data if isinstance(data, dict) else {})
        raise self._cancelled(data if isinstance(data, dict) else {})

    def _cancelled(self, data: dict[str, Any]) -> DCPError:
        code = str(data.get("code") or "ECANCELLED")
        reason = str(data.get("reason") or "the job was cancelled")
        if code == "ENOPROGRESS" and self.last_noprogress is not None:
            return DCPError(code, reason, slice_number=self.last_noprogress.get("slice"))
        error = self.last_error if code != "ECANCELLED" else None
        if code == NO_QUORUM:  # the reason names the slice; its NoQuorum error says the same
            named = error if error and error.get("name") == NO_QUORUM_ERROR_NAME else {}
            return DCPError(code, reason, slice_number=named.get("slice"))
        if error is None:
            return DCPError(code, reason)
        return DCPError(
            code,
            f"{reason}: {error.get('name', 'Error')}: {error.get('message', '')}",
            slice_number=error.get("slice"),
            traceback=error.get("traceback"),
        )

    def _set_total(self, total: int) -> None:
        self.state.total = total
        self.bar.set_total(total)

    def _job_id(self) -> str:
        assert self.state.id is not None
        return self.state.id

    # --- results --------------------------------------------------------------------------

    def _collect(self, session: Session) -> ResultHandle:
        job_id, total = self._job_id(), self.state.total
        if len(self.received) == total:  # every result came with the events: no fetch
            entries = sorted(self.received.items())
        else:
            request = lambda frame, reply: session.request(frame, self._on_event, reply)  # noqa: E731
            entries = fetch_pages(request, job_id, 1, total)
        _check_complete(entries, total)
        for slice_number, value in sorted(entries, key=lambda entry: entry[0]):
            self._emit_result(slice_number, value)
        self.console.flush()
        self.state.set_ready("complete")
        self.state.emit("complete", self.complete_data or {"total": total})
        identity_key = self.state.credentials.identity_key
        assert identity_key is not None
        fetcher = Remote(self.url, identity_key)
        return ResultHandle(
            entries,
            self.launch.results_input(),
            fetcher=lambda first, last: fetcher.fetch(job_id, first, last),
            blobs=lambda ref: read_blob(self.url, ref),  # from the job's own portal
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
