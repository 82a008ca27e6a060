"""A job: built by compute_for(), deployed and followed to its end by exec().

Open jobs and concurrency. `job.add_slices()`, `job.close()` and `job.cancel()` may be called
from any thread while exec() runs in another (or while `await job.exec_async()` runs in this
event loop). Once the scheduler has accepted the job, each of them opens its own short
connection (signed by the same keys), so they never wait on exec()'s socket; before that they
are queued and exec() sends them right after the deploy. exec()'s socket sees their effects as
events: new totals, the job's `complete`, or its `cancel`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from . import client
from .client import Remote
from .config import client_socket_url
from .connection import Frame, check_frame_size
from .errors import DCPError
from .events import EVENTS, ProgressBar, ProgressBarOption
from .execution import Execution
from .inputs import (
    REMEMBERED_STREAM_VALUES,
    InputSet,
    ProductInput,
    RangeInput,
    StreamInput,
    canonical_key,
    json_values,
)
from .keys import KeySpec, signing_key
from .keystore import address_of
from .options import (
    DEFAULT_PROGRESS_TIMEOUT_S,
    check_progress_timeout,
    check_public,
    check_requirements,
)
from .payment import credits_text, job_hash, parse_offer, payment
from .results import ResultHandle

__all__ = ["EVENTS", "Job"]

Callback = Callable[[Any], object]
Offer = str | Decimal | int | float


@dataclass
class QueuedRequests:
    """What was asked of the job before the scheduler gave it an id."""

    values: list[Any] = field(default_factory=list)
    close: bool = False
    cancel_reason: str | None = None


class Job:
    """A work function and an input set, ready to deploy with exec() (or run with local_exec).

    `job.on(event, callback)` follows the job (events in dcp.events: `readystatechange`,
    `accepted`, `status`, `result`, `console`, `error`, `noprogress`, `cancel`, `complete`).
    Options: `job.public = {"name", "description", "link"}`, `job.requirements = {...}`
    (DCP's schema), `job.auto_close = False` for an open job, `job.progress_timeout` (seconds).
    `job.id` is set once the scheduler accepts the job.
    """

    def __init__(
        self,
        input_set: InputSet | None,
        work: dict[str, str] | None,
        args: list[Any],
        *,
        auto_close: bool = True,
        progress_timeout: float = DEFAULT_PROGRESS_TIMEOUT_S,
        requirements: dict[str, Any] | None = None,
        public: dict[str, str] | None = None,
    ) -> None:
        self.input = input_set
        self.work = work
        self.args = args
        self.ref = str(uuid.uuid4())  # the same on every deploy of this job: deploy is idempotent
        self.id: str | None = None
        self.total = input_set.total if input_set is not None else 0
        self.auto_close = auto_close
        self.progress_timeout = progress_timeout
        self.requirements = requirements
        self.public = public
        self.status: dict[str, Any] = {}
        self.state = "new"
        self.results: ResultHandle | None = None
        self._callbacks: dict[str, list[Callback]] = {name: [] for name in EVENTS}
        self._dispatch: Callable[[Callback, Any], object] | None = None
        self._lock = threading.Lock()
        self._queued = QueuedRequests()
        self._running = False
        self._stop = threading.Event()
        self._added: dict[int, Any] = {}  # inputs of slices added after the deploy
        self._deploy: Frame | None = None
        self._url: str | None = None
        self._identity_key: bytes | None = None
        self._account_key: bytes | None = None
        self._offer: Decimal | None = None

    # --- options --------------------------------------------------------------------------

    @property
    def requirements(self) -> dict[str, Any]:
        """What a worker must have (`{"environment": {"webgpu": True}, "discrete": False}`)."""
        return self._requirements

    @requirements.setter
    def requirements(self, value: dict[str, Any] | None) -> None:
        self._requirements = check_requirements(value)

    @property
    def public(self) -> dict[str, str]:
        """The job's public `name`, `description` and `link`, shown on the portal."""
        return self._public

    @public.setter
    def public(self, value: dict[str, str] | None) -> None:
        self._public = check_public(value)

    @property
    def progress_timeout(self) -> float:
        """Seconds a slice may run without calling progress() before it is stopped."""
        return self._progress_timeout

    @progress_timeout.setter
    def progress_timeout(self, seconds: float) -> None:
        self._progress_timeout = check_progress_timeout(seconds)

    # --- events ---------------------------------------------------------------------------

    def on(self, event: str, callback: Callback) -> Job:
        """Call `callback(data)` on every `event` of this job; returns the job for chaining."""
        if event not in self._callbacks:
            raise DCPError("EINVALID", f"unknown event {event!r}: use one of {', '.join(EVENTS)}")
        if not callable(callback):
            raise DCPError("EINVALID", "the callback must be callable")
        self._callbacks[event].append(callback)
        return self

    def emit(self, event: str, data: Any) -> None:
        """Call the callbacks registered for `event` with `data` (in exec_async's loop there)."""
        for callback in self._callbacks[event]:
            if self._dispatch is not None:
                self._dispatch(callback, data)
            else:
                callback(data)

    def set_state(self, state: str) -> None:
        """Move to another ready state and emit `readystatechange`."""
        self.state = state
        self.emit("readystatechange", state)

    # --- running --------------------------------------------------------------------------

    def exec(
        self,
        slice_payment_offer: Offer = "0.001",
        account: KeySpec = None,
        identity: KeySpec = None,
        *,
        progress_bar: ProgressBarOption = None,
    ) -> ResultHandle:
        """Deploy the job, wait until every slice has a result, and return the results.

        `account` pays (default: `default.keystore` in the DCP home) and `identity` says who
        deploys (default: `id.keystore`). An open job (`auto_close=False`) returns once it is
        closed and complete. Inside a running event loop (Jupyter) the wait runs in a worker
        thread. `progress_bar`: None shows a bar when a person watches (terminal, notebook),
        False never, True always, or a file to draw it in. Raises DCPError when the
        scheduler refuses the job, when the job is cancelled (`ECANCELLED`, `ETOOMANYERRORS`,
        `ENOPROGRESS`), or when the scheduler stays unreachable (`ENOCONNECTION`).
        """
        return _blocking(lambda: self._exec(slice_payment_offer, account, identity, progress_bar))

    async def exec_async(
        self,
        slice_payment_offer: Offer = "0.001",
        account: KeySpec = None,
        identity: KeySpec = None,
        *,
        progress_bar: ProgressBarOption = None,
    ) -> ResultHandle:
        """exec() for asyncio: the socket runs in a worker thread, callbacks in this loop.

        Cancelling the awaiting task stops following the job; the job itself keeps running
        (cancel it with `job.cancel()`).
        """
        return await self._in_thread(
            lambda: self._exec(slice_payment_offer, account, identity, progress_bar)
        )

    def wait(
        self, identity: KeySpec = None, *, progress_bar: ProgressBarOption = None
    ) -> ResultHandle:
        """Follow a deployed (or attached) job to its end and return its results."""
        return _blocking(lambda: self._exec(None, None, identity, progress_bar))

    def local_exec(self, cores: int = 1, *, progress_bar: ProgressBarOption = None) -> ResultHandle:
        """Run the job on this machine, without the scheduler and without credits.

        Python work functions run in `cores` local processes, JavaScript ones in `node`; events,
        progress timeouts, retries and errors behave as on the network. In a script, call it
        under `if __name__ == "__main__":` (worker processes are spawned).
        """
        from .local import run_local  # multiprocessing and subprocess only when needed

        return _blocking(lambda: run_local(self, cores=cores, progress_bar=progress_bar))

    def _exec(
        self,
        offer_given: Offer | None,
        account: KeySpec,
        identity: KeySpec,
        progress_bar: ProgressBarOption,
    ) -> ResultHandle:
        self._stop.clear()
        self.set_state("exec")
        offer = parse_offer(offer_given) if offer_given is not None else None
        if offer is None and self.work is not None and self._deploy is None:
            raise DCPError("ENOJOB", "the job is not deployed yet: deploy it with exec()")
        self._check_deployable()
        self.set_state("init")
        identity_key, account_key = self._keys(identity, account)
        self._remember(identity_key, account_key, offer)
        deploy = self._deploy_frame(offer, account_key)
        bar = ProgressBar(progress_bar, self.total or None, f"job {self.id or self.ref[:8]}")
        execution = Execution(
            self,
            deploy=deploy,
            identity_key=identity_key,
            account_key=account_key,
            offer=self._offer,
            url=self._url or client_socket_url(),
            bar=bar,
        )
        self._running = True
        try:
            self.results = execution.run()
        finally:
            self._running = False
            bar.close()
        return self.results

    def _check_deployable(self) -> None:
        if self.work is None:
            return  # attached: nothing to deploy
        if not self.auto_close and isinstance(self.input, RangeInput | ProductInput):
            raise DCPError(
                "EINVALID",
                "an open job (auto_close=False) takes values, not a range: "
                "pass a list, a generator or dcp.Sparse([...])",
            )
        self.requirements = self._requirements  # mutated since it was set? check again
        self.public = self._public

    def _keys(self, identity: KeySpec, account: KeySpec) -> tuple[bytes, bytes | None]:
        """The identity key and (to deploy or add slices) the account key: those given, else
        those of an earlier exec(), else the DCP home's keystores."""
        identity_key = self._identity_key
        if identity_key is None or identity is not None:
            identity_key = signing_key(identity, "identity")
        account_key = self._account_key
        if self.work is not None and (account_key is None or account is not None):
            account_key = signing_key(account, "account")
        return identity_key, account_key

    def _remember(
        self, identity_key: bytes, account_key: bytes | None, offer: Decimal | None
    ) -> None:
        self._identity_key = identity_key
        self._account_key = account_key
        if offer is not None and self.work is not None and self._deploy is None:
            self._offer = offer  # a redeploy pays what the first deploy offered
        self._url = self._url or client_socket_url()

    def _deploy_frame(self, offer: Decimal | None, account_key: bytes | None) -> Frame | None:
        """The deploy request, built once: a redeploy must send the very same frame."""
        if self.work is None:
            return None
        if self._deploy is None:
            assert offer is not None and account_key is not None
            self._deploy = self.deploy_frame(offer, account_key)
        return self._deploy

    def deploy_frame(self, offer: Decimal, account_key: bytes) -> Frame:
        """The `deploy` request for this job, its payment signed by `account_key`.

        For a streamed input this reads the first batch of values from the iterable.
        """
        if self.work is None or self.input is None:
            raise DCPError("EINVALID", "an attached job is deployed already")
        input_wire, is_open = self._first_input()
        offer_text = credits_text(offer)
        digest = job_hash(
            ref=self.ref, work=self.work, args=self.args, input=input_wire, offer=offer_text
        )
        count = len(input_wire["values"]) if input_wire["kind"] == "values" else self.total
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
                total=count,
            ),
            "progress_timeout": math.ceil(self.progress_timeout),
        }
        if is_open:
            frame["open"] = True
        if self.public:
            frame["public"] = dict(self.public)
        if self.requirements:
            frame["requirements"] = self.requirements
        check_frame_size(frame)
        return frame

    def _first_input(self) -> tuple[dict[str, Any], bool]:
        """The deploy's `input` and whether the job is deployed open."""
        assert self.input is not None
        if not isinstance(self.input, StreamInput):
            return self.input.wire(), not self.auto_close
        first = self.input.next_batch(client.BATCH_VALUES, client.BATCH_BYTES)
        self.total = len(first)
        if not first and self.auto_close:
            raise DCPError("EINVALID", "the input set is empty: a job needs at least one slice")
        is_open = not (self.input.exhausted and self.auto_close)
        return {"kind": "values", "values": first}, is_open

    async def _in_thread(self, run: Callable[[], ResultHandle]) -> ResultHandle:
        loop = asyncio.get_running_loop()
        self._dispatch = lambda callback, data: loop.call_soon_threadsafe(callback, data)
        try:
            return await asyncio.to_thread(run)
        except asyncio.CancelledError:
            self._stop.set()
            raise
        finally:
            self._dispatch = None

    def stop_requested(self) -> bool:
        """Whether exec_async's caller gave up waiting."""
        return self._stop.is_set()

    # --- open jobs, cancel ----------------------------------------------------------------

    def add_slices(self, values: Iterable[Any], slice_payment_offer: Offer | None = None) -> int:
        """Append values to an open job (`auto_close=False`); returns the job's slice count.

        Before the scheduler has accepted the job the values are queued and sent by exec();
        after, they go at once on a short connection of their own, in batches, each paid by
        its own cheque at the job's offer (pass `slice_payment_offer` for an attached job).
        """
        if self.auto_close:
            raise DCPError(
                "EINVALID", "add_slices needs an open job: compute_for(..., auto_close=False)"
            )
        wire = _wire_values(values)
        with self._lock:
            if self.id is None:
                self._queued.values.extend(wire)
                self.total += len(wire)
                return self.total
            job_id = self.id
        offer = parse_offer(slice_payment_offer) if slice_payment_offer else self._offer
        if offer is None:
            raise DCPError("EINVALID", "pass slice_payment_offer: this job's offer is not known")
        account_key = self._account_key or signing_key(None, "account")
        for first, batch in self._remote().add_slices(
            job_id, wire, offer=offer, account_key=account_key
        ):
            self.record_added(first, batch)
        return self.total

    def close(self) -> int:
        """Tell the scheduler no more slices come: the job completes when all have results."""
        with self._lock:
            if self.id is None:
                self._queued.close = True
                return self.total
            job_id = self.id
        total = self._remote().close(job_id)
        self.total = max(self.total, total)
        self.auto_close = True
        return total

    def cancel(self, reason: str = "") -> None:
        """Cancel the job: dispatch stops, escrow is refunded, exec() raises ECANCELLED."""
        with self._lock:
            if self.id is None:
                if not self._running:
                    raise DCPError("ENOJOB", "the job is not deployed: there is nothing to cancel")
                self._queued.cancel_reason = reason
                return
            job_id = self.id
        self._remote().cancel(job_id, reason)

    def fetch(self, slices: Any = None) -> ResultHandle:
        """The results stored so far for `slices` (all when None), without waiting."""
        if self.id is None:
            raise DCPError("ENOJOB", "the job is not deployed: it has no results yet")
        remote, job_id = self._remote(), self.id
        handle = ResultHandle(
            [], self.input_view(), fetcher=lambda first, last: remote.fetch(job_id, first, last)
        )
        if slices is None:
            total = remote.status(job_id).get("total", self.total)
            return handle.fetch(range(1, int(total) + 1))
        return handle.fetch(slices)

    @classmethod
    def attach(cls, job_id: str, *, identity: KeySpec = None, account: KeySpec = None) -> Job:
        """A running or finished job deployed earlier (by any process of this identity).

        `job.wait()` (or exec()) then follows it to its end and returns its results; nothing is
        lost when the process that deployed it crashed. The job's input set is not known here,
        so its results answer by slice number (`key()` and `lookup_value()` are unavailable).
        """
        job = cls(None, None, [])
        job.id = job_id
        job._identity_key = signing_key(identity, "identity")
        if account is not None:
            job._account_key = signing_key(account, "account")
        job._url = client_socket_url()
        job.status = job._remote().status(job_id)
        total = job.status.get("total")
        job.total = total if isinstance(total, int) else 0
        job.auto_close = not job.status.get("open", False)
        return job

    # --- used by the execution ------------------------------------------------------------

    def accepted(self, job_id: str) -> QueuedRequests:
        """The scheduler accepted the job: set its id, hand over what was queued meanwhile."""
        with self._lock:
            self.id = job_id
            queued, self._queued = self._queued, QueuedRequests()
        return queued

    def record_added(self, first: int, values: list[Any]) -> None:
        """Slices first.. got `values`: remembered for key() and lookup_value()."""
        for number, value in enumerate(values, first):
            if len(self._added) < REMEMBERED_STREAM_VALUES:
                self._added[number] = value
        self.total = max(self.total, first + len(values) - 1)

    def input_view(self) -> InputSet | _OpenInput | None:
        """The input set as results see it: with the slices added to an open job."""
        return _OpenInput(self.input, self._added) if self._added else self.input

    def _remote(self) -> Remote:
        identity_key = self._identity_key or signing_key(None, "identity")
        return Remote(self._url or client_socket_url(), identity_key)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, ref={self.ref!r}, slices={self.total})"


class _OpenInput:
    """An open job's input: the deployed input set, then the values added by slice number."""

    def __init__(self, base: InputSet | None, added: dict[int, Any]) -> None:
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
                return self.base.slice_of(value)
        except (KeyError, IndexError):
            pass
        wanted = canonical_key(value)
        for number, item in sorted(self.added.items()):
            if canonical_key(item) == wanted:
                return number
        raise KeyError(value)


def _blocking(run: Callable[[], ResultHandle]) -> ResultHandle:
    """Run a blocking job wait; inside a running event loop (Jupyter), in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dcp-exec") as pool:
        return pool.submit(run).result()


def _wire_values(values: Iterable[Any]) -> list[Any]:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise DCPError("EINVALID", "add_slices takes a list (or any iterable) of values")
    return json_values(list(values), "added value")
