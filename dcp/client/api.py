"""compute_for(): DCP's `compute.for`, the way a job is made; jobs(): the jobs deployed."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from ..config import client_socket_url
from ..errors import DCPError
from ..keys import KeySpec, signing_key
from .inputs import parse_compute_args
from .job import Job
from .options import DEFAULT_PROGRESS_TIMEOUT_S, Quorum
from .remote import Remote
from .work import work_spec

__all__ = ["compute", "compute_for", "jobs"]


def compute_for(
    *params: Any,
    args: Iterable[Any] | None = None,
    language: str = "python",
    auto_close: bool = True,
    progress_timeout: float = DEFAULT_PROGRESS_TIMEOUT_S,
    requirements: dict[str, Any] | None = None,
    public: dict[str, str] | None = None,
    verify: Quorum | dict[str, Any] | None = None,
    compute_groups: list[dict[str, str]] | None = None,
    requires: Any = None,
    fs: str | os.PathLike[str] | None = None,
) -> Job:
    """Make a job that calls `work(datum, *args)` once per slice of the input set.

    Input sets: `compute_for(start, end[, step], work)`, DCP's inclusive range (`1, 10` is ten
    slices; `0, 1000, 3` ends at 999; float steps are exact), never enumerated here;
    `dcp.Range(1, 100, group=10)`: each slice gets a list of 10 values; `dcp.MultiRange((1, 3),
    (1, 4))`: nested loops, `work([i, j])`; `[...]` or `dcp.Sparse([...])`: specific values; any
    other iterable (a generator): streamed to the scheduler in batches as it is read.

    `work` is a self-contained Python function, or a source string (`language="js"` for
    JavaScript). Arguments go in `args=[...]` or as a last positional list. `auto_close=False`
    makes an open job that takes `job.add_slices()` until `job.close()`. A slice that runs
    `progress_timeout` seconds without calling progress() is stopped. `verify=dcp.Quorum(2)`
    has each slice computed by workers of 2 distinct users and accepted when their results
    agree (the escrow covers 2 results a slice). `compute_groups=[{"joinKey": ...,
    "joinSecret": ...}]` runs the job only on workers that joined one of those compute groups
    (made on the portal's Compute groups page). `requires=["mpmath", "./helpers.py",
    "./mypkg/"]`: what the work function imports besides the standard library, packed or
    resolved into pure-Python wheels (docs/packages.md). `fs="./data/"` (a directory or zip
    archive): the job's files, the work function's read-only current directory (`job.fs`).
    Deploy with `job.exec()`.
    """
    input_set, work, arguments = parse_compute_args(params, args, allow_empty=not auto_close)
    job = Job(
        input_set,
        work_spec(_checked_work(work), language),
        arguments,
        auto_close=auto_close,
        progress_timeout=progress_timeout,
        requirements=requirements,
        public=public,
        verify=verify,
        compute_groups=compute_groups,
        requires=requires,
    )
    job.fs = fs
    return job


def _checked_work(work: Any) -> Any:
    if not (callable(work) or isinstance(work, str)):
        raise DCPError(
            "EINVALID",
            f"the work function must be a function or a source string, not {type(work).__name__}",
        )
    return work


def jobs(identity: KeySpec = None) -> list[dict[str, Any]]:
    """Every job of this identity, newest first: `{"job", "name", "status", "total",
    "computed", "created"}` each."""
    return Remote(client_socket_url(), signing_key(identity, "identity")).jobs()


class _Compute:
    """The `dcp.compute` namespace: `compute.for_(...)` is compute_for()."""

    for_ = staticmethod(compute_for)

    def __repr__(self) -> str:
        return "dcp.compute"


compute = _Compute()
