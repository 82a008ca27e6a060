"""local_exec(): run a job on this machine, without the scheduler and without credits.

The slices are computed by dcp.runtime.local (local worker processes, the network's failure
rules); this module is the client-side glue: it hands that loop the job's work, arguments and
data, and turns what it reports into the job's events, its progress bar and its result handle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import DCPError
from ..runtime.local import LocalJob, check_cores, run_slices
from .events import ConsoleCollapser, ProgressBar, ProgressBarOption, slice_event

if TYPE_CHECKING:
    from .job import Job
    from .results import ResultHandle

__all__ = ["run_local"]


class _JobEvents:
    """What the local loop reports, as the job's events: console repeats collapsed, the bar
    advanced, error and noprogress data with `slice_number`, a cancel moving the job's state."""

    def __init__(self, job: Job, bar: ProgressBar) -> None:
        self.job = job
        self.bar = bar
        self.console = ConsoleCollapser(job.emit)

    def emit(self, event: str, data: Any) -> None:
        if event == "console":
            self.console.add_event(data)
            return
        if event in ("error", "noprogress"):
            data = slice_event(data)
        elif event == "result":
            self.bar.advance()
        elif event == "status":
            self.bar.set_total(data["total"])
        elif event == "cancel":
            self.console.flush()
            self.job.set_state("cancelled")
        self.job.emit(event, data)


def run_local(job: Job, *, cores: int, progress_bar: ProgressBarOption) -> ResultHandle:
    """Run every slice of `job` on `cores` local worker processes; returns the results."""
    from .results import ResultHandle

    if job.input is None or job.work is None:
        raise DCPError("EINVALID", "an attached job cannot run locally: its work is not known")
    check_cores(cores)
    local_job = LocalJob(
        language=job.work["language"],
        source=job.work["source"],
        args=job.args,
        data=job.input.iter_data(),
        progress_timeout=float(job.progress_timeout),
        total=job.total,
    )
    job.set_state("exec")
    bar = ProgressBar(progress_bar, job.total or None, "local job")
    events = _JobEvents(job, bar)
    try:
        job.set_state("init")
        results = run_slices(local_job, cores=cores, emit=events.emit)
    finally:
        events.console.flush()
        bar.close()
    _complete(job, len(results))
    job.results = ResultHandle(results.items(), job.input_view())
    return job.results


def _complete(job: Job, total: int) -> None:
    job.total = total
    job.emit(
        "status",
        {
            "total": total,
            "distributed": total,
            "computed": total,
            "failed": 0,
            "status": "finished",
        },
    )
    job.set_state("complete")
    job.emit("complete", {"total": total})
