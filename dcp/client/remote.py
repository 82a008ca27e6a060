"""Short connections to the scheduler: one request (or a few) and close.

Used where no exec() socket is at hand: `job.add_slices()`, `job.close()`, `job.cancel()`,
`Job.attach()`, `dcp.jobs()`, fetching results and inputs, and the `dcp` command. Every request
sent this way is idempotent (an add_slices batch carries its own `ref`), so a dropped connection
is simply retried.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ..protocol.messages import (
    Added,
    AddSlices,
    BatchPayment,
    Cancel,
    Cancelled,
    Closed,
    CloseJob,
    Escrow,
    Escrowed,
    JobsReply,
    ListJobs,
    Message,
    StatusReply,
    StatusRequest,
)
from .cheques import batch_payment, escrow_payment
from .connection import Frame, Session, check_frame_size, frame_of, ignore_events, with_session
from .results import Entries, fetch_inputs, fetch_pages
from .store import upload_referenced

__all__ = ["BATCH_BYTES", "BATCH_VALUES", "Remote", "add_slices_frame", "batches"]

BATCH_VALUES = 1000  # values per add_slices batch (and in an open job's deploy)
BATCH_BYTES = 1024 * 1024  # about this much JSON per batch


class Remote:
    """Requests to the scheduler at `url` (its client socket) as the identity `identity_key`."""

    def __init__(self, url: str, identity_key: bytes, give_up_s: float | None = None) -> None:
        self.url = url
        self.identity_key = identity_key
        self.give_up_s = give_up_s

    def request[R: Message](self, frame: Frame, reply: type[R]) -> R:
        """Send one request on a fresh connection and return its reply."""
        return self.run(lambda session: session.request(frame, ignore_events, reply))  # type: ignore[no-any-return]

    def run(self, action: Callable[[Session], Any]) -> Any:
        """Run `action` on a fresh session (again after a drop: it must be idempotent)."""
        return with_session(self.url, self.identity_key, action, self.give_up_s)

    def status(self, job_id: str) -> StatusReply:
        """The job's status (`total`, `computed`, `status`, ...) and what it is, without
        subscribing."""
        return self.request(frame_of(StatusRequest(type="status", job=job_id)), StatusReply)

    def jobs(self) -> list[dict[str, Any]]:
        """Every job of this identity, newest first."""
        return self.request(frame_of(ListJobs(type="jobs")), JobsReply).jobs

    def cancel(self, job_id: str, reason: str = "") -> None:
        """Cancel the job: dispatch stops and its escrow is refunded."""
        cancel = Cancel(type="cancel", job=job_id, reason=reason[:200])
        self.request(frame_of(cancel), Cancelled)

    def close(self, job_id: str) -> int:
        """Close an open job; returns its final number of slices."""
        return self.request(frame_of(CloseJob(type="close", job=job_id)), Closed).total

    def add_slices(
        self,
        job_id: str,
        values: list[Any],
        *,
        offer: Decimal,
        account_key: bytes,
        replicas: int = 1,
    ) -> list[tuple[int, list[Any]]]:
        """Append values to an open job in batches, each paid for `replicas` results a slice;
        returns (first slice number, batch) pairs."""
        added = []
        for batch in batches(values):
            frame = add_slices_frame(
                job_id, batch, offer=offer, account_key=account_key, replicas=replicas
            )
            upload_referenced(self.url, self.identity_key, frame, self.give_up_s)
            total = self.request(frame, Added).total
            added.append((total - len(batch) + 1, batch))
        return added

    def escrow(self, job_id: str, amount: Decimal, *, account_key: bytes) -> Decimal:
        """Add `amount` credits to the job's escrow (one `ref`, so a retry adds nothing more);
        returns what the escrow holds now."""
        ref = uuid.uuid4().hex
        payment = escrow_payment(account_key=account_key, job_id=job_id, ref=ref, amount=amount)
        request = Escrow(
            type="escrow", job=job_id, ref=ref, payment=BatchPayment.model_validate(payment)
        )
        return Decimal(self.request(frame_of(request), Escrowed).escrow)

    def fetch(self, job_id: str, first: int, last: int) -> Entries:
        """The stored results of slices first..last, over one connection."""
        return self.run(  # type: ignore[no-any-return]
            lambda session: fetch_pages(_requester(session), job_id, first, last)
        )

    def inputs(self, job_id: str, first: int, last: int) -> list[Any]:
        """The input values of slices first..last of a `values` job, over one connection."""
        return self.run(  # type: ignore[no-any-return]
            lambda session: fetch_inputs(_requester(session), job_id, first, last)
        )


def _requester(session: Session) -> Callable[[Frame, type[Any]], Any]:
    return lambda frame, reply: session.request(frame, ignore_events, reply)


def add_slices_frame(
    job_id: str, values: list[Any], *, offer: Decimal, account_key: bytes, replicas: int = 1
) -> Frame:
    """An `add_slices` request for one batch, with its own `ref` and cheque (for `replicas`
    results of each slice: the quorum of a job that asked for verification)."""
    ref = uuid.uuid4().hex
    payment = batch_payment(
        account_key=account_key,
        job_id=job_id,
        batch_ref=ref,
        offer=offer,
        count=len(values),
        replicas=replicas,
    )
    request = AddSlices(
        type="add_slices",
        job=job_id,
        ref=ref,
        values=values,
        payment=BatchPayment.model_validate(payment),
    )
    frame = frame_of(request)
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
