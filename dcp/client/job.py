"""A job: built by compute_for(), deployed and followed to its end by exec().

`Job` is a thin handle: what the job is (work function, input set, arguments, options) plus a
`JobState` (dcp.client.state) that holds everything that changes while it runs. Deploying and
following is `dcp.client.execution`; requests from other threads (add_slices, close, cancel,
fetch) are `dcp.client.control`; attaching to a job deployed elsewhere is `dcp.client.attach`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from ..config import client_socket_url
from ..errors import DCPError
from ..keys import KeySpec, signing_key
from ..protocol.verify import replicas
from .attach import attached_info
from .blobs import blobs_in, local_value
from .cheques import MarketValue, parse_offer, total_credits
from .control import JobRequests, results_input
from .deploy import build_deploy, first_input
from .events import EVENTS, ProgressBarOption
from .execution import Launch, follow
from .files import JobFilesArchive, pack_job_files
from .inputs import InputSet, ProductInput, RangeInput, StreamInput
from .options import (
    DEFAULT_PROGRESS_TIMEOUT_S,
    Quorum,
    check_compute_groups,
    check_progress_timeout,
    check_public,
    check_requirements,
    check_verify,
    deploy_requirements,
)
from .packages import (
    LocalEnvironment,
    PortalPyodide,
    Required,
    Resolution,
    Supplier,
    check_requires,
    resolve_requires,
    upload_blobs,
)
from .results import ResultHandle
from .state import JobState

__all__ = ["EVENTS", "Job"]

Callback = Callable[[Any], object]
Offer = str | Decimal | int | float | MarketValue
Frame = dict[str, Any]


class Job:
    """A work function and an input set, ready to deploy with exec() (or run with local_exec).

    `job.on(event, callback)` follows the job (events in dcp.client.events: `readystatechange`,
    `accepted`, `status`, `result`, `console`, `error`, `noprogress`, `duplicate-result`,
    `rejected`, `cancel`, `complete`).
    Options: `job.public = {"name", "description", "link"}`, `job.requirements = {...}`
    (DCP's schema; a work function that uses the GPU requires WebGPU workers by itself),
    `job.auto_close = False` for an open job, `job.progress_timeout` (seconds),
    `job.verify = dcp.Quorum(2)` for result verification,
    `job.compute_groups = [{"joinKey": ..., "joinSecret": ...}]` to run only on the workers of
    those compute groups; `job.requires("mpmath", "./helpers.py")` for what the work function
    imports besides the standard library (docs/packages.md).
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
        verify: Quorum | dict[str, Any] | None = None,
        compute_groups: list[dict[str, str]] | None = None,
        requires: Any = None,
    ) -> None:
        self.input: Any = input_set
        self.work = work
        self.args = args
        self.auto_close = auto_close
        self.progress_timeout = progress_timeout
        self.requirements = requirements
        self.public = public
        self.verify = verify
        self.compute_groups = compute_groups
        self._requires: list[Required] = check_requires(requires) if requires else []
        self._resolution: Resolution | None = None  # the requires, resolved for the deploy
        self._files: JobFilesArchive | None = None  # job.fs, packed
        self._state = JobState(input_set.total if input_set is not None else 0)
        self._requests = JobRequests(self._state)

    # --- the state, seen from the handle --------------------------------------------------

    @property
    def id(self) -> str | None:
        """The scheduler's id of the job, once it has accepted it."""
        return self._state.id

    @property
    def ref(self) -> str:
        """The client's own name for the job: the same on every deploy of it."""
        return self._state.ref

    @property
    def total(self) -> int:
        """How many slices the job has (so far, for an open job)."""
        return self._state.total

    @total.setter
    def total(self, total: int) -> None:
        self._state.total = total

    @property
    def status(self) -> dict[str, Any]:
        """The job's last status from the scheduler (`total`, `computed`, `status`, ...)."""
        return self._state.status

    @property
    def state(self) -> str:
        """The ready state: new, exec, init, deploying, ..., complete or cancelled."""
        return self._state.ready

    @property
    def results(self) -> ResultHandle | None:
        """The results of the last exec() (or local_exec())."""
        return self._state.results  # type: ignore[no-any-return]

    @results.setter
    def results(self, results: ResultHandle | None) -> None:
        self._state.results = results

    # --- options --------------------------------------------------------------------------

    @property
    def requirements(self) -> dict[str, Any]:
        """What a worker must have (`{"environment": {"webgpu": True}, "discrete": False}`), as
        set. The deploy adds `environment.webgpu = True` when the work function uses the GPU
        (`dcp.gpu`; `gpu` or `navigator.gpu` in JavaScript); `webgpu: False` then refuses the
        deploy. local_exec() ignores requirements."""
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
    def verify(self) -> Quorum | None:
        """Result verification (`dcp.Quorum(2)`), or None: each slice computed once."""
        return self._verify

    @verify.setter
    def verify(self, value: Quorum | dict[str, Any] | None) -> None:
        self._verify = check_verify(value)

    @property
    def compute_groups(self) -> list[dict[str, str]]:
        """The compute groups the job is deployed into (`[{"joinKey", "joinSecret"}]`): only
        workers that joined one of them get its slices. Empty: the public group, which every
        worker serves unless it left it. local_exec() ignores it."""
        return self._compute_groups

    @compute_groups.setter
    def compute_groups(self, value: list[dict[str, str]] | None) -> None:
        self._compute_groups = check_compute_groups(value)

    @property
    def progress_timeout(self) -> float:
        """Seconds a slice may run without calling progress() before it is stopped."""
        return self._progress_timeout

    @progress_timeout.setter
    def progress_timeout(self, seconds: float) -> None:
        self._progress_timeout = check_progress_timeout(seconds)

    @property
    def fs(self) -> str | None:
        """The job's files (DCP's `job.fs`): a directory or zip archive, packed when set and
        unpacked read-only as the work function's current directory, so that it opens them by
        their paths under it (`open("tables/a.csv")`); None for none. Python work functions
        only (docs/packages.md, "A job's files")."""
        return self._files.given if self._files is not None else None

    @fs.setter
    def fs(self, source: str | os.PathLike[str] | None) -> None:
        if self._state.deploy is not None or self._state.attached:
            raise DCPError("EINVALID", "the job is deployed already: its files are fixed")
        self._files = pack_job_files(source) if source is not None else None

    def requires(self, *packages: Any) -> Job:
        """Add what the work function imports besides the standard library (DCP's
        `job.requires`): requirement strings pip resolves (`"mpmath"`, `"networkx>=3"`),
        local modules and packages (`"./helpers.py"`, `"./mypkg/"`) and pure-Python wheel
        files, each given alone or in a list. Checked at once (EINVALID for a missing path or
        a malformed requirement); resolved when the job is deployed or run locally
        (dcp.client.packages). Returns the job."""
        if self._state.deploy is not None or self._state.attached:
            raise DCPError("EINVALID", "the job is deployed already: its requires are fixed")
        for item in packages:
            self._requires.extend(check_requires(item))
        self._resolution = None
        return self

    # --- events ---------------------------------------------------------------------------

    def on(self, event: str, callback: Callback) -> Job:
        """Call `callback(data)` on every `event` of this job; returns the job for chaining."""
        self._state.listeners.add(event, callback)
        return self

    def emit(self, event: str, data: Any) -> None:
        """Call the callbacks registered for `event` with `data` (in exec_async's loop there)."""
        self._state.emit(event, data)

    def set_state(self, state: str) -> None:
        """Move to another ready state and emit `readystatechange`."""
        self._state.set_ready(state)

    # --- running --------------------------------------------------------------------------

    def exec(
        self,
        slice_payment_offer: Offer = "0.001",
        account: KeySpec = None,
        identity: KeySpec = None,
        *,
        progress_bar: ProgressBarOption = None,
        detach_on_interrupt: bool = False,
    ) -> ResultHandle:
        """Deploy the job, wait until every slice has a result, and return the results.

        `account` pays (default: `default.keystore` in the DCP home) and `identity` says who
        deploys (default: `id.keystore`). An open job (`auto_close=False`) returns once it is
        closed and complete. Inside a running event loop (Jupyter) the wait runs in a worker
        thread. `progress_bar`: None shows a bar when a person watches (terminal, notebook),
        False never, True always, or a file to draw it in. Ctrl-C cancels the job (its escrow
        is refunded) unless `detach_on_interrupt=True`, which leaves it running to be followed
        again with `Job.attach(job_id).wait()`; either way one line on stderr says which, and
        KeyboardInterrupt is raised again. Raises DCPError when the scheduler refuses the job,
        when the job is cancelled (`ECANCELLED`, `ETOOMANYERRORS`, `ENOPROGRESS`, `ENOQUORUM`
        when the results of a slice never agreed, `ELOSTSLICE` when a slice's workers kept
        vanishing while they held it), or when the scheduler stays unreachable
        (`ENOCONNECTION`). With `job.verify` set, the cheque covers `offer x slices x quorum`.
        """
        try:
            return _blocking(
                lambda: self._exec(slice_payment_offer, account, identity, progress_bar),
                stop=self._state.stop.set,
            )
        except KeyboardInterrupt:
            self._requests.interrupted(detach_on_interrupt)
            raise

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

    def cost(self, slice_payment_offer: Offer) -> Decimal:
        """The credits exec() moves into the job's escrow at this offer before any slice runs:
        offer x slices, x the quorum when `verify` is set (each slice is paid to that many
        agreeing workers); at market value, its budget. What the job does not spend comes back
        when it ends. Slices added later to an open job are paid for the same way, batch by
        batch."""
        if isinstance(slice_payment_offer, MarketValue):
            return slice_payment_offer.budget
        offer = parse_offer(slice_payment_offer)
        return Decimal(total_credits(offer, self.total * replicas(self.verify)))

    def local_exec(self, cores: int = 1, *, progress_bar: ProgressBarOption = None) -> ResultHandle:
        """Run the job on this machine, without the scheduler and without credits.

        Python work functions run in `cores` local processes, JavaScript ones in `node`; events,
        progress timeouts, retries and errors behave as on the network. With `job.verify` set,
        each slice is computed by `quorum` distinct local workers (at least that many are
        started) and their results voted on as the scheduler does: `duplicate-result` events,
        and ENOQUORUM when they never agree (every slice is replicated: local workers have no
        history to trust). Blobs and large bytes go to the workers inline, never to the store.
        The job's `requires` are installed into a throwaway directory first on the workers'
        sys.path: the same wheels exec() sends, and compiled packages from this environment.
        """
        if self._state.attached:
            raise DCPError("EINVALID", "an attached job cannot run locally: it runs on the network")
        if self.input is None or self.work is None:
            raise DCPError("EINVALID", "an attached job cannot run locally: its work is not known")
        from ..runtime.local import LocalJob  # processes and the runtime only when needed
        from .local import run_local

        wheels = self._resolve(LocalEnvironment()).wheels
        self._check_files_language()
        job = LocalJob(
            language=self.work["language"],
            source=self.work["source"],
            args=local_value(self.args),
            data=map(local_value, self.input.iter_data()),
            progress_timeout=float(self.progress_timeout),
            total=self.total,
            verify=self.verify.protocol() if self.verify is not None else None,
            packages=[wheel.installable() for wheel in wheels],
            files=self._files.local() if self._files is not None else None,
        )
        inputs = self.input_view()
        return _blocking(
            lambda: run_local(self._state, job, inputs, cores=cores, progress_bar=progress_bar)
        )

    def _exec(
        self,
        offer_given: Offer | None,
        account: KeySpec,
        identity: KeySpec,
        progress_bar: ProgressBarOption,
    ) -> ResultHandle:
        state = self._state
        state.stop.clear()
        state.set_ready("exec")
        offer = None
        if isinstance(offer_given, MarketValue):
            offer, state.credentials.market = Decimal(0), offer_given
        elif offer_given is not None:
            offer = parse_offer(offer_given)
        if offer is None and not self._deployed():
            raise DCPError("ENOJOB", "the job is not deployed yet: deploy it with exec()")
        self._check_deployable()
        state.set_ready("init")
        self._unlock(identity, account, offer)
        launch = Launch(
            deploy=self._deploy_once(),
            input=self.input,
            auto_close=self.auto_close,
            results_input=lambda: self.input_view(),
            progress_bar=progress_bar,
        )
        self._upload_packages()
        return follow(state, launch)

    def _deployed(self) -> bool:
        return self._state.attached or self._state.deploy is not None

    def _check_deployable(self) -> None:
        if self._state.attached:
            return  # nothing to deploy
        if not self.auto_close and isinstance(self.input, RangeInput | ProductInput):
            raise DCPError(
                "EINVALID",
                "an open job (auto_close=False) takes values, not a range: "
                "pass a list, a generator or dcp.Sparse([...])",
            )
        self.requirements = self._requirements  # mutated since it was set? check again
        self.public = self._public
        self.compute_groups = self._compute_groups
        if self.work is not None:
            deploy_requirements(self.requirements, self.work)  # refused before keys are asked
        if self._state.deploy is None:
            self._deploy_packages()  # resolved (or refused) before keys are asked too
            self._check_files_language()

    def _check_files_language(self) -> None:
        if self._files is not None and (self.work is None or self.work["language"] != "python"):
            raise DCPError(
                "EINVALID", "job.fs is for Python work functions: a JavaScript one has no files"
            )

    def _resolve(self, supplier: Supplier) -> Resolution:
        """The job's requires, packed and resolved for `supplier`'s sandbox."""
        if not self._requires:
            return Resolution()
        if self.work is None or self.work["language"] != "python":
            raise DCPError(
                "EINVALID",
                "requires is for Python work functions: a JavaScript one cannot import packages",
            )
        return resolve_requires(self._requires, supplier)

    def _deploy_packages(self) -> Resolution:
        """The requires resolved against the portal's Pyodide packages, once per deploy."""
        if self._resolution is None:
            url = self._state.credentials.url or client_socket_url()
            self._resolution = self._resolve(PortalPyodide(url))
        return self._resolution

    def _upload_packages(self) -> None:
        """Store the job's wheels and files for its identity before the deploy that names them."""
        credentials, resolution = self._state.credentials, self._resolution
        blobs = [wheel.blob for wheel in resolution.wheels] if resolution is not None else []
        if self._files is not None:
            blobs.append(self._files.blob)
        if not blobs or self._state.id is not None:
            return
        assert credentials.url is not None and credentials.identity_key is not None
        upload_blobs(credentials.url, credentials.identity_key, blobs)

    def _unlock(self, identity: KeySpec, account: KeySpec, offer: Decimal | None) -> None:
        """Keep the identity key and (to deploy or add slices) the account key: those given,
        else those of an earlier exec(), else the DCP home's keystores; and the offer."""
        credentials = self._state.credentials
        if credentials.identity_key is None or identity is not None:
            credentials.identity_key = signing_key(identity, "identity")
        must_pay = not self._state.attached
        if must_pay and (credentials.account_key is None or account is not None):
            credentials.account_key = signing_key(account, "account")
        if offer is not None and not self._deployed():
            credentials.offer = offer  # a redeploy pays what the first deploy offered
        credentials.url = credentials.url or client_socket_url()

    def _deploy_once(self) -> Frame | None:
        """The deploy request, built once: a redeploy must send the very same frame."""
        state = self._state
        if state.attached:
            return None
        if state.deploy is None:
            offer, account_key = state.credentials.offer, state.credentials.account_key
            assert offer is not None and account_key is not None
            state.deploy = self.deploy_frame(offer, account_key)
            state.credentials.replicas = replicas(self.verify)
        return state.deploy

    def deploy_frame(self, offer: Decimal, account_key: bytes) -> Frame:
        """The `deploy` request for this job, its payment signed by `account_key`.

        For a streamed input this reads the first batch of values from the iterable.
        """
        if self._state.attached or self.work is None or self.input is None:
            raise DCPError("EINVALID", "an attached job is deployed already")
        input_wire, is_open = first_input(self.input, self.auto_close)
        # The frame names blobs by hash alone: the job holds their bytes until they are stored.
        self._state.blobs = blobs_in(self.args, input_wire)
        if isinstance(self.input, StreamInput):
            self.total = len(input_wire["values"])
        options = {
            "progress_timeout": self.progress_timeout,
            "open": is_open,
            "public": self.public,
            "requirements": {
                **deploy_requirements(self.requirements, self.work),
                **self._deploy_packages().requirements(),
                **({"fs": self._files.requirement()} if self._files is not None else {}),
            },
            "verify": self.verify.protocol() if self.verify is not None else None,
            "compute_groups": self.compute_groups,
            "market": self._state.credentials.market,
        }
        return build_deploy(
            ref=self.ref,
            work=self.work,
            args=self.args,
            input_wire=input_wire,
            total=self.total,
            offer=offer,
            account_key=account_key,
            options=options,
        )

    async def _in_thread(self, run: Callable[[], ResultHandle]) -> ResultHandle:
        loop = asyncio.get_running_loop()
        listeners = self._state.listeners
        listeners.dispatch = lambda callback, data: loop.call_soon_threadsafe(callback, data)
        try:
            return await asyncio.to_thread(run)
        except asyncio.CancelledError:
            self._state.stop.set()
            raise
        finally:
            listeners.dispatch = None

    # --- open jobs, cancel, results -------------------------------------------------------

    def add_slices(self, values: Iterable[Any], slice_payment_offer: Offer | None = None) -> int:
        """Append values to an open job (`auto_close=False`); returns the job's slice count.

        Before the scheduler has accepted the job the values are queued and sent by exec();
        after, they go at once on a short connection of their own, in batches, each paid by
        its own cheque at the job's offer (an attached job knows its offer from the scheduler).
        """
        if self.auto_close:
            raise DCPError(
                "EINVALID", "add_slices needs an open job: compute_for(..., auto_close=False)"
            )
        return self._requests.add_slices(values, slice_payment_offer)

    def escrow(self, credits: str | Decimal | int | float) -> Decimal:
        """Add `credits` to the escrow of this job, deployed at market value, from the account
        that deployed it; a job paused for want of funds (`nofunds` event) resumes. Returns the
        credits its escrow holds now."""
        return self._requests.escrow(parse_offer(credits, "credits"))

    def close(self) -> int:
        """Tell the scheduler no more slices come: the job completes when all have results."""
        total = self._requests.close()
        if total is None:
            return self.total  # queued: exec() closes the job right after the deploy
        self.auto_close = True
        return total

    def cancel(self, reason: str = "") -> None:
        """Cancel the job: dispatch stops, escrow is refunded, exec() raises ECANCELLED."""
        self._requests.cancel(reason)

    def fetch(self, slices: Any = None) -> ResultHandle:
        """The results stored so far for `slices` (all when None), without waiting."""
        return self._requests.fetch(slices, self.input_view())

    @classmethod
    def attach(cls, job_id: str, *, identity: KeySpec = None, account: KeySpec = None) -> Job:
        """A running or finished job deployed earlier (by any process of this identity).

        `job.wait()` (or exec()) then follows it to its end and returns its results; nothing is
        lost when the process that deployed it crashed. The scheduler describes the job, so
        its results answer `key()` and `lookup_value()` and an open job takes `add_slices()`
        as on the handle that deployed it (`account` pays for those; default: the DCP home's).
        """
        job = cls(None, None, [])
        state = job._state
        state.id, state.attached = job_id, True
        state.credentials.identity_key = signing_key(identity, "identity")
        if account is not None:
            state.credentials.account_key = signing_key(account, "account")
        state.credentials.url = client_socket_url()
        job._describe(job._requests.remote().status(job_id))
        return job

    def _describe(self, reply: Any) -> None:
        """Take the job's status and (from a scheduler that sends it) its definition."""
        self._state.status = reply.status.model_dump()
        self.total = reply.status.total
        self.auto_close = not reply.status.open
        verification = reply.status.verification or {}
        self._state.credentials.replicas = verification.get("quorum", 1)
        if reply.info is None:
            return  # an older scheduler: results answer by slice number only
        remote, job_id = self._requests.remote(), reply.job
        info = attached_info(
            reply.info, lambda first, last: remote.inputs(job_id, first, last), lambda: self.total
        )
        self.work, self.args, self.input = info.work, info.args, info.input
        self._state.credentials.offer = info.offer

    # --- used by the execution and local_exec ---------------------------------------------

    def input_view(self) -> Any:
        """The input set as results see it: with the slices added to an open job."""
        return results_input(self._state, self.input)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, ref={self.ref!r}, slices={self.total})"


def _blocking(
    run: Callable[[], ResultHandle], stop: Callable[[], None] | None = None
) -> ResultHandle:
    """Run a blocking job wait; inside a running event loop (Jupyter), in a worker thread,
    which `stop` tells to give up when the wait is interrupted."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dcp-exec") as pool:
        future = pool.submit(run)
        try:
            return future.result()
        except KeyboardInterrupt:
            if stop is not None:
                stop()  # before leaving the pool, which waits for its thread
            raise
