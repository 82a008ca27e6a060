"""A job's events as the SDK hands them to callbacks, shared by exec() and local_exec().

| event | data |
| --- | --- |
| `readystatechange` | the state: exec, init, deploying, uploading, deployed, closed, complete |
| `accepted` | `{"job", "total"}`; at market value once estimated, with `"estimate"` |
| `status` | `{"total", "distributed", "computed", "failed", "status", "verification", ...}` |
| `result` | `{"slice", "value"}`, once per slice |
| `console` | `{"level", "message", "slice_number", "count"}`: repeats collapsed (see below) |
| `error` | `{"slice_number", "name", "message", "traceback"}` |
| `noprogress` | `{"slice_number", "seconds"}` |
| `duplicate-result` | `{"slice", "results", "agreeing", "accepted", "disputed"}` |
| `rejected` | `{"count", "reason", "slices"}`: the scheduler refused results of a worker |
| `cancel` | `{"code", "reason"}` |
| `complete` | `{"total"}` |
| `nofunds` | `{"escrow", "slices", "needed"}`: a market-value job paused, its escrow spent |

`verification` (`{"quorum", "pending", "disputed", "rejected"}`) is there for a job that asked
for it; `duplicate-result` says another result of a verified slice came in, `rejected` that the
scheduler refused results of a worker. A job that fails moves to the state `cancelled`. `slice`
is kept beside `slice_number` in console, error and noprogress data. A verified slice whose
results never agree is an `error` named `NoQuorum`, then a `cancel` with the code `ENOQUORUM`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

from ..errors import DCPError

__all__ = ["EVENTS", "ConsoleCollapser", "Listeners", "ProgressBar", "slice_event"]

EVENTS = (
    "readystatechange",
    "accepted",
    "status",
    "result",
    "console",
    "error",
    "noprogress",
    "duplicate-result",
    "rejected",
    "cancel",
    "complete",
    "nofunds",
)

Emit = Callable[[str, Any], None]
ProgressBarOption = bool | TextIO | None


def slice_event(data: Any) -> dict[str, Any]:
    """An error or noprogress event's data with `slice_number` beside the protocol's `slice`."""
    if not isinstance(data, dict):
        return {"slice_number": None, "slice": None, "data": data}
    return {**data, "slice_number": data.get("slice")}


class ConsoleCollapser:
    """Collapses identical consecutive console lines (same level and message).

    The first line is emitted at once with `count` 1. Its repeats are swallowed; when a
    different line arrives, or the job ends (`flush()`), one more event carries the line again
    with `count` = how many repeats were swallowed.
    """

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._last: tuple[str, str] | None = None
        self._last_slice: int | None = None
        self._repeats = 0

    def add(self, level: str, message: str, slice_number: int | None) -> None:
        """One console line from a slice."""
        if (level, message) == self._last:
            self._repeats += 1
            self._last_slice = slice_number
            return
        self.flush()
        self._last, self._last_slice = (level, message), slice_number
        self._send(level, message, slice_number, 1)

    def add_event(self, data: Any) -> None:
        """One console event of the protocol: `{"slice", "level", "message"}`."""
        if isinstance(data, dict):
            level, message = str(data.get("level", "log")), str(data.get("message", ""))
            slice_number = data.get("slice")
            self.add(level, message, slice_number if isinstance(slice_number, int) else None)

    def flush(self) -> None:
        """Emit the count of swallowed repeats, if any."""
        if self._repeats and self._last is not None:
            level, message = self._last
            self._send(level, message, self._last_slice, self._repeats)
        self._repeats = 0

    def _send(self, level: str, message: str, slice_number: int | None, count: int) -> None:
        data = {
            "level": level,
            "message": message,
            "slice_number": slice_number,
            "slice": slice_number,
            "count": count,
        }
        self._emit("console", data)


class ProgressBar:
    """A tqdm bar of slices computed, shown while a job runs (or a no-op).

    `option` None shows it when stderr is a terminal or inside a notebook; True always (on
    stderr); False never; a file object always, written to that file.
    """

    def __init__(self, option: ProgressBarOption, total: int | None, description: str) -> None:
        self._bar: Any = None
        self._total = total
        target = _bar_target(option)
        if target is None:
            return
        from tqdm.auto import tqdm  # imported only when a bar is shown

        file = None if target is True else target
        self._bar = tqdm(total=total or None, desc=description, unit="slice", file=file)

    @property
    def shown(self) -> bool:
        """Whether a bar is drawn."""
        return self._bar is not None

    def set_total(self, total: int) -> None:
        """The job has this many slices (it grows while a stream is uploaded)."""
        if self._bar is not None and total != self._total:
            self._total = total
            self._bar.total = total
            self._bar.refresh()

    def advance(self, slices: int = 1) -> None:
        """`slices` more slices were computed."""
        if self._bar is not None:
            self._bar.update(slices)

    def close(self) -> None:
        """Stop drawing."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _bar_target(option: ProgressBarOption) -> bool | TextIO | None:
    if option is False:
        return None
    if option is None:
        return True if _interactive() else None
    return option


def _interactive() -> bool:
    """A person watches: stderr is a terminal, or this runs in a Jupyter kernel."""
    if "ipykernel" in sys.modules:
        return True
    stderr = sys.stderr
    return stderr is not None and hasattr(stderr, "isatty") and stderr.isatty()


Callback = Callable[[Any], object]
Dispatch = Callable[[Callback, Any], object]


class Listeners:
    """The callbacks registered on a job, by event; `dispatch` runs them elsewhere (in
    exec_async's event loop) when set."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = {name: [] for name in EVENTS}
        self.dispatch: Dispatch | None = None

    def add(self, event: str, callback: Callback) -> None:
        """Call `callback(data)` on every `event`."""
        if event not in self._callbacks:
            raise DCPError("EINVALID", f"unknown event {event!r}: use one of {', '.join(EVENTS)}")
        if not callable(callback):
            raise DCPError("EINVALID", "the callback must be callable")
        self._callbacks[event].append(callback)

    def emit(self, event: str, data: Any) -> None:
        """Call the callbacks registered for `event` with `data`."""
        for callback in self._callbacks[event]:
            if self.dispatch is not None:
                self.dispatch(callback, data)
            else:
                callback(data)
