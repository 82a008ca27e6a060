"""compute_for(): DCP's `compute.for`, the way a job is made."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import DCPError
from .inputs import parse_compute_args
from .job import Job
from .work import work_spec

__all__ = ["compute", "compute_for"]


def compute_for(*params: Any, args: Iterable[Any] | None = None, language: str = "python") -> Job:
    """Make a job that calls `work(datum, *args)` once per slice of the input set.

    `compute_for(values, work)` makes one slice per value of any iterable;
    `compute_for(start, end, work)` or `compute_for(start, end, step, work)` is DCP's inclusive
    range (`compute_for(1, 10, f)` is ten slices). `work` is a self-contained Python function,
    or a source string (`language="js"` for JavaScript). Arguments go in `args=[...]` or as a
    last positional list. Deploy the job with `job.exec()`.
    """
    input_set, work, arguments = parse_compute_args(params, args)
    if not (callable(work) or isinstance(work, str)):
        raise DCPError(
            "EINVALID",
            f"the work function must be a function or a source string, not {type(work).__name__}",
        )
    return Job(input_set, work_spec(work, language), arguments)


class _Compute:
    """The `dcp.compute` namespace: `compute.for_(...)` is compute_for()."""

    for_ = staticmethod(compute_for)

    def __repr__(self) -> str:
        return "dcp.compute"


compute = _Compute()
