"""The failure rules every place that runs slices applies: the scheduler and local_exec.

A slice that raises is retried once (preferably on another worker); a second failure cancels the
job with ETOOMANYERRORS. A slice stopped for making no progress is retried once; a second stall
cancels the job with ENOPROGRESS. A slice whose lease ends unanswered for workers of
MAX_LOST_LEASES distinct users (the worker's connection died, or it went silent past its lease,
however long progress kept it) cancels the job with ELOSTSLICE: a slice that crashes every tab
it reaches, or never ends, is not handed out forever.
"""

from __future__ import annotations

MAX_ATTEMPTS = 2
TOO_MANY_ERRORS = "ETOOMANYERRORS"
NO_PROGRESS = "ENOPROGRESS"
NO_PROGRESS_ERROR_NAME = "NoProgress"  # the error name a worker reports for a stopped slice
MAX_LOST_LEASES = 3
LOST_SLICE = "ELOSTSLICE"


def gives_up(failures: int) -> bool:
    """Whether a slice that has failed (or stalled) `failures` times fails its job."""
    return failures >= MAX_ATTEMPTS


def too_many_errors_reason(slice_number: int, failures: int, name: str, message: str) -> str:
    """The cancel reason of a job whose slice kept raising."""
    return f"slice {slice_number} failed {failures} times: {name}: {message}"


def no_progress_reason(slice_number: int, seconds: float) -> str:
    """The cancel reason of a job whose slice kept making no progress."""
    return f"slice {slice_number} made no progress for {seconds} s twice"


def lost_slice_reason(slice_number: int, users: int) -> str:
    """The cancel reason of a job whose slice kept losing its workers."""
    return (
        f"slice {slice_number} was handed out to workers of {users} users and never answered: "
        "each time the worker's connection died or its lease ran out (does it crash the tab, "
        "or never end?)"
    )
