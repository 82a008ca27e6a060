"""The headless worker's run: a browser with the worker page, polled once a second; restarted
when it crashes; stopped cleanly (in-flight slices handed back) on a signal or after --max-hours."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TextIO

from .browser import BrowserMissing, launch_chromium, start_playwright
from .options import WorkerOptions, headless_url
from .status import Stats, Totals, status_line

POLL_S = 1.0
RETRY_S = (1, 2, 4, 8, 15, 30)  # waits between tries to open the page while the portal is down

__all__ = ["WorkerError", "run_worker"]


class WorkerError(RuntimeError):
    """The worker cannot run (a missing browser) or was refused (its message says why)."""


class StopRequest:
    """SIGINT and SIGTERM ask for a clean stop; a second one while stopping is ignored."""

    def __init__(self) -> None:
        self.reason = ""
        self._previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in self._previous:
            signal.signal(sig, self._ask)

    def _ask(self, signum: int, frame: FrameType | None) -> None:
        self.reason = self.reason or signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def wait(self, seconds: float) -> None:
        """Sleep, waking early when a stop is asked for."""
        end = time.monotonic() + seconds
        while not self.reason and time.monotonic() < end:
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))


class Display:
    """The status line: redrawn in place on a terminal, a new line on each change otherwise;
    the event log appended to --log-file."""

    def __init__(self, out: TextIO, log_file: str | None) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last = ""
        self.log = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115

    def status(self, line: str) -> None:
        if self.tty:
            self.out.write(f"\r{line}\x1b[K")
        elif line != self.last:
            self.out.write(f"{line}\n")
        self.out.flush()
        self.last = line

    def final(self, line: str) -> None:
        """The last status line, always printed and ended."""
        self.out.write(f"\r{line}\x1b[K\n" if self.tty else f"{line}\n")
        self.out.flush()
        self.last = ""

    def say(self, message: str) -> None:
        """A line of its own (a restart, a stop), above the status line on a terminal."""
        prefix = "\r\x1b[K" if self.tty else ""
        self.out.write(f"{prefix}{message}\n")
        self.out.flush()
        self.record(message, "info")
        if self.tty and self.last:
            self.status(self.last)

    def record(self, message: str, level: str, at: str | None = None) -> None:
        if self.log is not None:
            at = at or datetime.now(UTC).isoformat(timespec="seconds")
            self.log.write(f"{at} {level} {message}\n")
            self.log.flush()

    def close(self) -> None:
        if self.tty and self.last:
            self.out.write("\n")
        if self.log is not None:
            self.log.close()


class WorkerPage:
    """One browser and one worker page; `lost` is set when either crashes."""

    def __init__(self, playwright: Any, options: WorkerOptions) -> None:
        self.options = options
        self.browser = launch_chromium(playwright, gpu=options.gpu)
        self.lost = ""
        self.browser.on("disconnected", lambda _: self._lose("the browser closed"))
        context = self.browser.new_context()
        if options.session_cookie:
            name, _, value = options.session_cookie.partition("=")
            context.add_cookies([{"name": name, "value": value, "url": options.scheduler}])
        self.page = context.new_page()
        self.page.on("crash", lambda _: self._lose("the worker page crashed"))
        self.log_index = 0

    def _lose(self, why: str) -> None:
        self.lost = self.lost or why

    def open(self) -> None:
        self.page.goto(headless_url(self.options))
        self.page.wait_for_function("window.dcpWorker !== undefined")

    def poll(self) -> tuple[Stats, list[dict[str, str]]]:
        raw = self.page.evaluate(
            "(index) => ({stats: window.dcpWorker.stats(), log: window.dcpWorker.logSince(index)})",
            self.log_index,
        )
        self.log_index = int(raw["log"]["next"])
        return Stats.from_page(raw["stats"]), list(raw["log"]["lines"])

    def stop(self) -> Stats:
        """Hands in-flight slices back and closes the socket (see headless.js)."""
        raw = self.page.evaluate("() => window.dcpWorker.stop()")
        return Stats.from_page(raw)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a crashed browser may already be gone
            self.browser.close()


def run_worker(options: WorkerOptions, out: TextIO = sys.stdout) -> int:
    """Run until a signal, --max-hours or a refusal; the exit status: 0 stopped, 1 refused."""
    try:
        playwright = start_playwright()
    except BrowserMissing as missing:
        raise WorkerError(str(missing)) from None
    stop = StopRequest()
    display = Display(out, options.log_file)
    try:
        return _Run(playwright, options, stop, display).run()
    except BrowserMissing as missing:
        raise WorkerError(str(missing)) from None
    finally:
        stop.restore()
        display.close()
        playwright.stop()


class _Run:
    def __init__(
        self, playwright: Any, options: WorkerOptions, stop: StopRequest, display: Display
    ) -> None:
        self.playwright = playwright
        self.options = options
        self.stop = stop
        self.display = display
        self.totals = Totals()
        self.deadline = time.monotonic() + options.max_hours * 3600 if options.max_hours else None
        self.page: WorkerPage | None = None

    def run(self) -> int:
        try:
            while not self._should_stop():
                if self.page is None or self.page.lost:
                    self._restart()
                    continue
                if self._poll() == "error":
                    self.display.status(status_line(self.totals))
                    raise WorkerError(f"the worker stopped: {self.totals.live.error}")
                self.display.status(status_line(self.totals))
                self.stop.wait(POLL_S)
            self._stop_page()
            return 0
        finally:
            if self.page is not None:
                self.page.close()

    def _should_stop(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline and not self.stop.reason:
            self.stop.reason = "--max-hours"
        return bool(self.stop.reason)

    def _poll(self) -> str:
        assert self.page is not None
        try:
            stats, lines = self.page.poll()
        except Exception:
            self.page.lost = self.page.lost or "the worker page stopped answering"
            return "lost"
        self.totals.live = stats
        for line in lines:
            self.display.record(line.get("message", ""), line.get("level", "info"), line.get("at"))
        return stats.state

    def _restart(self) -> None:
        """Opens a (new) browser and page; a lost page's slices go back to the queue when its
        socket closes, so nothing is computed twice for pay."""
        if self.page is not None:
            self.display.say(
                f"{self.page.lost}: restarting it (the slices it held go back to the scheduler)"
            )
            self.page.close()
            self.totals.page_lost("restarting")
            self.page = None
        for wait in (0, *RETRY_S):
            self.stop.wait(wait)
            if self._should_stop():
                return
            page = WorkerPage(self.playwright, self.options)
            try:
                page.open()
            except BrowserMissing:
                page.close()
                raise
            except Exception as error:
                page.close()
                self.display.say(f"could not open {self.options.scheduler}: {_first_line(error)}")
                continue
            self.page = page
            return
        self.display.say("still no portal: trying again")

    def _stop_page(self) -> None:
        self.display.say(f"stopping ({self.stop.reason}): handing in-flight slices back")
        if self.page is not None and not self.page.lost:
            try:
                self.totals.live = self.page.stop()
            except Exception as error:
                self.display.say(f"the page could not stop cleanly: {_first_line(error)}")
            self._poll()
        self.display.final(status_line(self.totals))


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
