"""What a job handle knows and what changes while it runs: the `JobState` behind a `Job`.

`Job` (dcp.client.job) is a thin handle over this object, as a future is over its state: the
execution, the short requests of `add_slices()`/`close()`/`cancel()` and `local_exec()` all
read and write the job through it. Its lock guards the moment the scheduler gives the job an id,
so that a request from another thread is either queued for exec() or sent on its own.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..errors import DCPError
from .cheques import MarketValue
from .events import Listeners
from .inputs import REMEMBERED_STREAM_VALUES, InputSet, canonical_key

__all__ = ["InputView", "JobState", "QueuedRequests"]

Frame = dict[str, Any]


@dataclass
class QueuedRequests:
    """What was asked of the job before the scheduler gave it an id."""

    values: list[Any] = field(default_factory=list)
    close: bool = False
    cancel_reason: str | None = None


@dataclass
class Credentials:
    """Where the job lives and the keys and offer it was deployed with, kept for later
    requests (a redeploy pays what the first deploy offered; slices added later are paid for
    `replicas` results each, the quorum of a job that asked for verification)."""

    url: str | None = None
    identity_key: bytes | None = None
    account_key: bytes | None = None
    offer: Decimal | None = None
    replicas: int = 1
    market: MarketValue | None = None  # deployed at market value: paid per CPU-second


class JobState:
    """The mutable state of one job: id, totals, status, results, listeners, queued requests."""

    def __init__(self, total: int) -> None:
        self.ref = str(uuid.uuid4())  # the same on every deploy of this job: deploy is idempotent
        self.id: str | None = None
        self.total = total
        self.status: dict[str, Any] = {}
        self.ready = "new"
        self.results: Any = None  # the ResultHandle of the last exec()
        self.listeners = Listeners()
        self.lock = threading.Lock()
        self.queued = QueuedRequests()
        self.running = False
        self.stop = threading.Event()
        self.added: dict[int, Any] = {}  # inputs of slices added after the deploy
        self.deploy: Frame | None = None  # built once: a redeploy sends the very same frame
        self.blobs: list[Any] = []  # the dcp.Blobs the deploy references, alive until uploaded
        self.attached = False  # deployed elsewhere: exec() follows it, never deploys it
        self.credentials = Credentials()

    def emit(self, event: str, data: Any) -> None:
        """Call the callbacks registered for `event` with `data`."""
        self.listeners.emit(event, data)

    def set_ready(self, state: str) -> None:
        """Move to another ready state and emit `readystatechange`."""
        self.ready = state
        self.emit("readystatechange", state)

    def accepted(self, job_id: str) -> QueuedRequests:
        """The scheduler accepted the job: set its id, hand over what was queued meanwhile."""
        with self.lock:
            self.id = job_id
            queued, self.queued = self.queued, QueuedRequests()
        return queued

    def record_added(self, first: int, values: list[Any]) -> None:
        """Slices first.. got `values`: remembered for key() and lookup_value()."""
        for number, value in enumerate(values, first):
            if len(self.added) < REMEMBERED_STREAM_VALUES:
                self.added[number] = value
        self.total = max(self.total, first + len(values) - 1)

    def stop_requested(self) -> bool:
        """Whether exec_async's caller (or Ctrl-C) gave up waiting."""
        return self.stop.is_set()


class InputView:
    """An open job's input as results see it: the deployed input set, then the values added,
    by slice number."""

    def __init__(self, base: InputSet | Any | None, added: dict[int, Any]) -> None:
        self.base = base
        self.added = added

    def datum(self, slice_number: int) -> Any:
        if slice_number in self.added:
            return self.added[slice_number]
        if self.base is None:
            raise DCPError("EINVALID", "the input set of this job is not known here")
        return self.base.datum(slice_number)

    def slice_of(self, value: Any) -> int:
        try:
            if self.base is not None:
                return int(self.base.slice_of(value))
        except (KeyError, IndexError):
            pass
        wanted = canonical_key(value)
        for number, item in sorted(self.added.items()):
            if canonical_key(item) == wanted:
                return number
        raise KeyError(value)
