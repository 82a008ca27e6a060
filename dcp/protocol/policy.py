"""The failure rules every place that runs slices applies: the scheduler and local_exec.

A slice that raises is retried once (preferably on another worker); a second failure cancels the
job with ETOOMANYERRORS. A slice stopped for making no progress is retried once; a second stall
cancels the job with ENOPROGRESS.
"""

from __future__ import annotations

MAX_ATTEMPTS = 2
TOO_MANY_ERRORS = "ETOOMANYERRORS"
NO_PROGRESS = "ENOPROGRESS"
NO_PROGRESS_ERROR_NAME = "NoProgress"  # the error name a worker reports for a stopped slice


def gives_up(failures: int) -> bool:
    """Whether a slice that has failed (or stalled) `failures` times fails its job."""
    return failures >= MAX_ATTEMPTS


def too_many_errors_reason(slice_number: int, failures: int, name: str, message: str) -> str:
    """The cancel reason of a job whose slice kept raising."""
    return f"slice {slice_number} failed {failures} times: {name}: {message}"


def no_progress_reason(slice_number: int, seconds: float) -> str:
    """The cancel reason of a job whose slice kept making no progress."""
    return f"slice {slice_number} made no progress for {seconds} s twice"
