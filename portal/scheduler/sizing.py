"""Task sizing: hand a worker about a second of work for its cores at a time, and never more
than one frame holds (tasks, pages of results and inputs all stop at the frame limit)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

HELD_TASKS = 2  # a worker holds at most this many tasks' worth of slices at once
FASTEST_SLICE_MS = 0.05  # a slice reported faster than this is taken as this fast
NEW_WEIGHT = 0.3  # the share of the latest batch in the moving average of slice times
OLD_WEIGHT = 0.7
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
    """One worker connection's measured slice time, as a moving average over its batches."""

    cores: int = 1
    slice_ms: float | None = None

    def measured(self, timings: Iterable[float | None]) -> None:
        """Fold in the slice times (ms) a result batch reported; slices without one are skipped."""
        known = [ms for ms in timings if ms is not None]
        if not known:
            return
        mean = sum(known) / len(known)
        self.slice_ms = (
            mean if self.slice_ms is None else OLD_WEIGHT * self.slice_ms + NEW_WEIGHT * mean
        )

    def task_size(self) -> int:
        """How many slices the next task holds: one per core until a slice time is known."""
        if not self.slice_ms:
            return self.cores
        per_second = self.cores * 1000 / max(self.slice_ms, FASTEST_SLICE_MS)
        return max(1, min(int(per_second), settings.MAX_TASK_SLICES))

    def most_held(self) -> int:
        """How many slices the worker may hold at once: what it can compute in about
        HELD_TASKS seconds at its measured speed, so that claiming many cores, or asking
        again and again, cannot lease a whole job to one connection."""
        return HELD_TASKS * self.task_size()
