"""Short connections to the scheduler: one request (or a few) and close.

Used where no exec() socket is at hand: `job.add_slices()`, `job.close()`, `job.cancel()`,
`Job.attach()`, `dcp.jobs()`, fetching results and the `dcp` command. Every request sent this
way is idempotent (an add_slices batch carries its own `ref`), so a dropped connection is
simply retried.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .connection import Frame, Session, check_frame_size, ignore_events, with_session
from .errors import DCPError
from .payment import batch_payment
from .results import Entries, fetch_pages

__all__ = ["BATCH_BYTES", "BATCH_VALUES", "Remote", "add_slices_frame", "batches"]

BATCH_VALUES = 1000  # values per add_slices batch (and in an open job's deploy)
BATCH_BYTES = 1024 * 1024  # about this much JSON per batch


class Remote:
    """Requests to the scheduler at `url` (its client socket) as the identity `identity_key`."""

    def __init__(self, url: str, identity_key: bytes, give_up_s: float | None = None) -> None:
        self.url = url
        self.identity_key = identity_key
        self.give_up_s = give_up_s

    def request(self, frame: Frame) -> Frame:
        """Send one request on a fresh connection and return its reply."""
        return self.run(lambda session: session.request(frame, ignore_events))

    def run(self, action: Callable[[Session], Any]) -> Any:
        """Run `action` on a fresh session (again after a drop: it must be idempotent)."""
        return with_session(self.url, self.identity_key, action, self.give_up_s)

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's status (`total`, `computed`, `status`, ...), without subscribing."""
        status = self.request({"type": "status", "job": job_id}).get("status")
        if not isinstance(status, dict):
            raise DCPError("EPROTOCOL", "the scheduler's status reply has no status")
        return status

    def jobs(self) -> list[dict[str, Any]]:
        """Every job of this identity, newest first."""
        jobs = self.request({"type": "jobs"}).get("jobs")
        if not isinstance(jobs, list):
            raise DCPError("EPROTOCOL", "the scheduler's jobs reply has no jobs list")
        return jobs

    def cancel(self, job_id: str, reason: str = "") -> None:
        """Cancel the job: dispatch stops and its escrow is refunded."""
        self.request({"type": "cancel", "job": job_id, "reason": reason[:200]})

    def close(self, job_id: str) -> int:
        """Close an open job; returns its final number of slices."""
        return _total(self.request({"type": "close", "job": job_id}), "close")

    def add_slices(
        self, job_id: str, values: list[Any], *, offer: Decimal, account_key: bytes
    ) -> list[tuple[int, list[Any]]]:
        """Append values to an open job in batches; returns (first slice number, batch) pairs."""
        added = []
        for batch in batches(values):
            frame = add_slices_frame(job_id, batch, offer=offer, account_key=account_key)
            total = _total(self.request(frame), "add_slices")
            added.append((total - len(batch) + 1, batch))
        return added

    def fetch(self, job_id: str, first: int, last: int) -> Entries:
        """The stored results of slices first..last, over one connection."""
        return self.run(  # type: ignore[no-any-return]
            lambda session: fetch_pages(
                lambda frame: session.request(frame, ignore_events), job_id, first, last
            )
        )


def add_slices_frame(
    job_id: str, values: list[Any], *, offer: Decimal, account_key: bytes
) -> Frame:
    """An `add_slices` request for one batch, with its own `ref` and cheque."""
    ref = uuid.uuid4().hex
    frame: Frame = {
        "type": "add_slices",
        "job": job_id,
        "ref": ref,
        "values": values,
        "payment": batch_payment(
            account_key=account_key, job_id=job_id, batch_ref=ref, offer=offer, count=len(values)
        ),
    }
    check_frame_size(frame)
    return frame


def batches(values: list[Any]) -> list[list[Any]]:
    """JSON-ready values cut into batches of at most BATCH_VALUES and about BATCH_BYTES."""
    cut: list[list[Any]] = []
    batch: list[Any] = []
    size = 0
    for value in values:
        batch.append(value)
        size += len(json.dumps(value)) + 1
        if len(batch) >= BATCH_VALUES or size >= BATCH_BYTES:
            cut.append(batch)
            batch, size = [], 0
    if batch:
        cut.append(batch)
    return cut


def _total(reply: Frame, request: str) -> int:
    total = reply.get("total")
    if not isinstance(total, int):
        raise DCPError("EPROTOCOL", f"the scheduler's reply to {request} has no total")
    return total
