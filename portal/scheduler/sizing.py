"""Task sizing: hand a worker about a second of work for its cores at a time, and never more
than one frame holds (tasks, pages of results and inputs all stop at the frame limit)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

HELD_TASKS = 2  # a worker holds at most this many tasks' worth of slices at once
FASTEST_SLICE_MS = 0.05  # a slice reported faster than this is taken as this fast
NEW_WEIGHT = 0.3  # the share of the latest batch in the moving average of slice times
OLD_WEIGHT = 0.7
REMEMBERED_JOBS = 32  # a connection keeps the slice times of this many jobs it computed
# What a frame's envelope (type, ids, lease times...) may add to the values it carries.
ENVELOPE_BYTES = 4096
SLICE_OVERHEAD_BYTES = (
    32  # what a slice adds around its value: {"slice": n, "datum": ...}, [n, ...]
)


def frame_budget() -> int:
    """The bytes of values one frame the scheduler sends may carry."""
    return settings.MAX_FRAME_BYTES - ENVELOPE_BYTES


def json_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def frame_slices(source: str, args: Any, largest_datum: int) -> int:
    """How many slices with inputs of up to `largest_datum` bytes one task frame carries
    beside the work function and its arguments (0: not even one)."""
    room = frame_budget() - json_bytes(source) - json_bytes(args)
    return max(room, 0) // (largest_datum + SLICE_OVERHEAD_BYTES)


@dataclass
class TaskSizer:
    """One worker connection's measured slice time for each job it computed, a moving average
    over its batches: a job of 1 ms slices says nothing of the next job's slices (its first
    task, sized for 1 ms slices, would hold a whole job of slow ones)."""

    cores: int = 1
    slice_ms: dict[str, float] = field(default_factory=dict)  # job id -> ms, oldest first

    def measured(self, job_id: str, timings: Iterable[float | None]) -> None:
        """Fold in the slice times (ms) a result batch of `job_id` reported; slices without one
        are skipped."""
        known = [ms for ms in timings if ms is not None]
        if not known:
            return
        mean = sum(known) / len(known)
        before = self.slice_ms.pop(job_id, None)
        self.slice_ms[job_id] = mean if before is None else OLD_WEIGHT * before + NEW_WEIGHT * mean
        while len(self.slice_ms) > REMEMBERED_JOBS:
            del self.slice_ms[next(iter(self.slice_ms))]

    def task_size(self, job_id: str | None = None) -> int:
        """How many slices of `job_id` the next task holds: one per core until its slice time
        is known."""
        slice_ms = self.slice_ms.get(job_id) if job_id is not None else None
        if not slice_ms:
            return self.cores
        per_second = self.cores * 1000 / max(slice_ms, FASTEST_SLICE_MS)
        return max(1, min(int(per_second), settings.MAX_TASK_SLICES))
