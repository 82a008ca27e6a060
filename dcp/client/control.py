"""What a handle asks of its job besides exec(): add slices, close, cancel, fetch, and what
Ctrl-C during exec() does.

These may be called from any thread while exec() runs in another. Once the scheduler has
accepted the job, each opens its own short connection (signed by the same keys), so they never
wait on exec()'s socket; before that they are queued in the job's state and exec() sends them
right after the deploy. exec()'s socket sees their effects as events.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from ..config import client_socket_url
from ..errors import DCPError
from ..keys import signing_key
from ..protocol.messages import Accepted
from .cheques import parse_offer
from .inputs import json_values
from .remote import Remote
from .results import ResultHandle
from .state import InputView, JobState
from .store import read_blob

__all__ = ["JobRequests"]

INTERRUPT_CANCEL_GIVE_UP_S = 10.0  # Ctrl-C should not hang on an unreachable scheduler
INTERRUPT_REASON = "interrupted (Ctrl-C) during exec()"


class JobRequests:
    """Requests about one job on short connections, or queued until it has an id."""

    def __init__(self, state: JobState) -> None:
        self.state = state

    def remote(self, give_up_s: float | None = None) -> Remote:
        """Short connections to the job's scheduler, as the job's identity."""
        credentials = self.state.credentials
        identity_key = credentials.identity_key or signing_key(None, "identity")
        return Remote(credentials.url or client_socket_url(), identity_key, give_up_s)

    def add_slices(self, values: Iterable[Any], offer_given: Any) -> int:
        """Queue the values, or send them in paid batches; returns the job's slice count."""
        wire = _wire_values(values)
        state = self.state
        with state.lock:
            if state.id is None:
                state.queued.values.extend(wire)
                state.total += len(wire)
                return state.total
            job_id = state.id
        offer = self._offer(offer_given)
        account_key = state.credentials.account_key or signing_key(None, "account")
        added = self.remote().add_slices(
            job_id,
            wire,
            offer=offer,
            account_key=account_key,
            replicas=state.credentials.replicas,
        )
        for first, batch in added:
            state.record_added(first, batch)
        return state.total

    def _offer(self, offer_given: Any) -> Decimal:
        offer = parse_offer(offer_given) if offer_given else self.state.credentials.offer
        if offer is None:
            raise DCPError("EINVALID", "pass slice_payment_offer: this job's offer is not known")
        return offer

    def escrow(self, amount: Decimal) -> Decimal:
        """Add `amount` credits to the deployed job's escrow; what it holds now."""
        state = self.state
        if state.id is None:
            raise DCPError("ENOJOB", "the job is not deployed yet: deploy it with exec()")
        account_key = state.credentials.account_key or signing_key(None, "account")
        return self.remote().escrow(state.id, amount, account_key=account_key)

    def close(self) -> int | None:
        """Close the job now, or queue the close; returns its final count (None: queued)."""
        with self.state.lock:
            if self.state.id is None:
                self.state.queued.close = True
                return None
            job_id = self.state.id
        total = self.remote().close(job_id)
        self.state.total = max(self.state.total, total)
        return total

    def cancel(self, reason: str) -> None:
        """Cancel the job now, or queue the cancel for the exec() that is deploying it."""
        with self.state.lock:
            if self.state.id is None:
                if not self.state.running:
                    raise DCPError("ENOJOB", "the job is not deployed: there is nothing to cancel")
                self.state.queued.cancel_reason = reason
                return
            job_id = self.state.id
        self.remote().cancel(job_id, reason)

    def fetch(self, slices: Any, input_view: Any) -> ResultHandle:
        """The results stored so far for `slices` (all when None), without waiting."""
        job_id = self.state.id
        if job_id is None:
            raise DCPError("ENOJOB", "the job is not deployed: it has no results yet")
        remote = self.remote()
        handle = ResultHandle(
            [],
            input_view,
            fetcher=lambda first, last: remote.fetch(job_id, first, last),
            blobs=lambda ref: read_blob(remote.url, ref),
        )
        if slices is None:
            total = remote.status(job_id).status.total
            return handle.fetch(range(1, total + 1))
        return handle.fetch(slices)

    def interrupted(self, detach: bool) -> None:
        """Ctrl-C stopped exec(): cancel the job (refunding its escrow) unless `detach`, and
        say in one line which happened."""
        self.state.stop.set()  # an exec() running in a worker thread stops following too
        job_id = self.state.id or self._deployed_meanwhile(detach)
        if job_id is None:
            _say(f"dcp: interrupted before job {self.state.ref[:8]} was deployed")
        elif detach:
            _say(
                f"dcp: job {job_id} keeps running; follow it again with "
                f"dcp.Job.attach({job_id!r}).wait()"
            )
        else:
            self._cancel_on_interrupt(job_id)

    def _deployed_meanwhile(self, detach: bool) -> str | None:
        """The id of a job whose deploy was built (and perhaps sent) but not answered: the deploy
        is sent again (the scheduler answers a known `ref` with the job it made, charging
        nothing twice), so that the job can be cancelled or followed. None when there was no
        deploy or the scheduler cannot be reached."""
        if self.state.deploy is None:
            return None
        try:
            reply = self.remote(INTERRUPT_CANCEL_GIVE_UP_S).request(self.state.deploy, Accepted)
        except DCPError as error:
            if not detach:
                _say(
                    f"dcp: job {self.state.ref[:8]} may be running; it could not be found ({error})"
                )
            return None
        self.state.id = reply.job
        return reply.job

    def _cancel_on_interrupt(self, job_id: str) -> None:
        try:
            self.remote(INTERRUPT_CANCEL_GIVE_UP_S).cancel(job_id, INTERRUPT_REASON)
        except DCPError as error:
            _say(f"dcp: job {job_id} could not be cancelled ({error}); `dcp cancel {job_id}`")
            return
        self.state.set_ready("cancelled")
        _say(f"dcp: job {job_id} cancelled (Ctrl-C); its escrow is refunded")


def results_input(state: JobState, base: Any) -> Any:
    """The input set as results see it: with the slices added to an open job."""
    return InputView(base, state.added) if state.added else base


def _wire_values(values: Iterable[Any]) -> list[Any]:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise DCPError("EINVALID", "add_slices takes a list (or any iterable) of values")
    return json_values(list(values), "added value")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
