"""local_exec's worker process for Python work functions: `python -m dcp.runtime.worker`.

Started as a module (never through multiprocessing), so the user's script is not imported again.
It reads JSON lines on stdin, `{"type": "init", "source", "args", "path", "cwd"}` (path:
directories holding the job's installed packages, put first on sys.path; cwd: the job's
unpacked files, its current directory, or null) then `{"type": "slice",
"slice", "datum"}`, computes each slice with the slice runtime (dcp.runtime.slice), and writes
JSON lines on a duplicate of its original stdout: `{"type": "started" | "progress" | "console" |
"result" | "error", "slice": n, ...}`. File descriptor 1 itself is pointed at stderr, so nothing
the work function writes there can be mistaken for a message.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import sys
import time
from typing import Any, TextIO

from dcp.runtime.packages import use_directories
from dcp.runtime.slice import SliceRuntime

PROGRESS_INTERVAL_S = 0.05  # at most one progress message per interval reaches the parent


class PipeHost:
    """The slice runtime's host: messages to the parent as JSON lines."""

    def __init__(self, channel: TextIO) -> None:
        self.channel = channel
        self.slice_number: int | None = None
        self.last_progress = 0.0

    def send(self, message: dict[str, Any]) -> None:
        self.channel.write(json.dumps(message) + "\n")
        self.channel.flush()

    def report_progress(self, value: float | None) -> None:
        now = time.monotonic()
        if now - self.last_progress >= PROGRESS_INTERVAL_S:
            self.last_progress = now
            self.send({"type": "progress", "slice": self.slice_number, "value": value})

    def console(self, level: str, message: str) -> None:
        slice_number = self.slice_number
        self.send({"type": "console", "slice": slice_number, "level": level, "message": message})


def compute(runtime: SliceRuntime, host: PipeHost, slice_number: int, datum: Any) -> None:
    """One slice, from `started` (the parent's progress clock starts) to its reply."""
    host.send({"type": "started", "slice": slice_number})
    host.slice_number, host.last_progress = slice_number, 0.0
    reply = runtime.run(slice_number, datum)
    if inspect.isawaitable(reply):
        reply = asyncio.run(_awaited(reply))
    host.slice_number = None
    host.send({**reply, "slice": slice_number})


async def _awaited(reply: Any) -> Any:
    return await reply


def message_channel() -> TextIO:
    """A private copy of stdout for messages; fd 1 goes to stderr from now on."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return channel


def serve(lines: TextIO, channel: TextIO) -> None:
    """Answer init and slice messages until stdin closes."""
    host = PipeHost(channel)
    runtime: SliceRuntime | None = None
    for line in lines:
        message = json.loads(line)
        if message["type"] == "init":
            use_directories(message.get("path") or [])
            if message.get("cwd"):
                os.chdir(message["cwd"])  # the job's files, as the sandbox mounts them
            runtime = SliceRuntime(message["source"], message.get("args") or [], host)
            runtime.compile()  # a failure is every slice's reply (run() compiles again)
        elif message["type"] == "slice" and runtime is not None:
            compute(runtime, host, message["slice"], message["datum"])


def main() -> None:
    serve(sys.stdin, message_channel())


if __name__ == "__main__":
    main()
