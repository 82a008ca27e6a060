"""local_exec(): run a job on this machine, without the scheduler and without credits.

The slices are computed by dcp.runtime.local (local worker processes, the network's failure
rules); this module is the client-side glue: it hands that loop the job's work, arguments and
data, and turns what it reports into the job's events (results decoded: bytes come back as
bytes), its progress bar and its result handle.
"""

from __future__ import annotations

from typing import Any

from ..runtime.local import LocalJob, check_cores, run_slices
from .blobs import result_value
from .events import ConsoleCollapser, ProgressBar, ProgressBarOption, slice_event
from .results import ResultHandle
from .state import JobState

__all__ = ["run_local"]


class _JobEvents:
    """What the local loop reports, as the job's events: console repeats collapsed, the bar
    advanced, error and noprogress data with `slice_number`, a cancel moving the job's state."""

    def __init__(self, state: JobState, bar: ProgressBar) -> None:
        self.state = state
        self.bar = bar
        self.console = ConsoleCollapser(state.emit)
        self.last_status: dict[str, Any] = {}

    def emit(self, event: str, data: Any) -> None:
        if event == "console":
            self.console.add_event(data)
            return
        if event in ("error", "noprogress"):
            data = slice_event(data)
        elif event == "result":
            self.bar.advance()
            data = {**data, "value": result_value(data["value"])}
        elif event == "status":
            self.bar.set_total(data["total"])
            self.last_status = data
        elif event == "cancel":
            self.console.flush()
            self.state.set_ready("cancelled")
        self.state.emit(event, data)


def run_local(
    state: JobState, job: LocalJob, inputs: Any, *, cores: int, progress_bar: ProgressBarOption
) -> ResultHandle:
    """Run every slice of `job` on `cores` local worker processes; returns the results, which
    answer key() and lookup_value() through `inputs`."""
    check_cores(cores)
    state.set_ready("exec")
    bar = ProgressBar(progress_bar, job.total or None, "local job")
    events = _JobEvents(state, bar)
    try:
        state.set_ready("init")
        results = run_slices(job, cores=cores, emit=events.emit)
    finally:
        events.console.flush()
        bar.close()
    _complete(state, len(results), events.last_status.get("verification"))
    state.results = ResultHandle(results.items(), inputs)
    return state.results


def _complete(state: JobState, total: int, verification: dict[str, int] | None) -> None:
    state.total = total
    status: dict[str, Any] = {
        "total": total,
        "distributed": total,
        "computed": total,
        "failed": 0,
        "status": "finished",
    }
    if verification is not None:
        status["verification"] = verification
    state.emit("status", status)
    state.set_ready("complete")
    state.emit("complete", {"total": total})
