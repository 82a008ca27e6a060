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
# Waits before the tries to (re)open the page after the first (at once): the portal is down, or
# the browser keeps crashing. The last one repeats until a page runs STEADY_S without a loss.
RETRY_S = (1, 2, 4, 8, 15, 30)
STEADY_S = 60.0

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
            # As the page writes its lines' times (JavaScript's toISOString), so the log sorts.
            at = at or datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            self.log.write(f"{at} {level} {message}\n")
            self.log.flush()

    def close(self) -> None:
        if self.tty and self.last:
            self.out.write("\n")
        if self.log is not None:
            self.log.close()


class Backoff:
    """The wait before each try to open a worker page: none for the first, then RETRY_S in
    turn, the last one repeated; reset() once a page has run steadily."""

    def __init__(self) -> None:
        self.tries = 0

    @property
    def upcoming(self) -> float:
        """The wait before the next try."""
        return RETRY_S[min(self.tries, len(RETRY_S)) - 1] if self.tries else 0

    def next_wait(self) -> float:
        """The wait before the next try, counting that try."""
        wait = self.upcoming
        self.tries += 1
        return wait

    def reset(self) -> None:
        self.tries = 0


class WorkerPage:
    """One browser and one worker page; `lost` says why, once either crashed or closed."""

    def __init__(self, browser: Any, options: WorkerOptions) -> None:
        self.options = options
        self.browser = browser
        self.lost = ""
        self.opened_at = time.monotonic()
        self.log_index = 0
        # Playwright delivers these during its next call (a poll): the poll fails the same way.
        self.browser.on("disconnected", lambda _: self._lose("the browser closed"))
        context = self.browser.new_context()
        if options.session_cookie:
            name, _, value = options.session_cookie.partition("=")
            context.add_cookies([{"name": name, "value": value, "url": options.scheduler}])
        self.page = context.new_page()
        self.page.on("crash", lambda _: self._lose("the worker page crashed"))

    @classmethod
    def open(cls, playwright: Any, options: WorkerOptions) -> WorkerPage:
        """A new Chromium showing the worker page; nothing left running when that fails."""
        browser = launch_chromium(playwright, gpu=options.gpu)
        try:
            worker_page = cls(browser, options)
            worker_page.page.goto(headless_url(options))
            worker_page.page.wait_for_function("window.dcpWorker !== undefined")
        except BaseException:
            with contextlib.suppress(Exception):
                browser.close()
            raise
        return worker_page

    def _lose(self, why: str) -> None:
        self.lost = self.lost or why

    @property
    def steady(self) -> bool:
        return not self.lost and time.monotonic() - self.opened_at >= STEADY_S

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
        self.backoff = Backoff()

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
        if self.page.steady:
            self.backoff.reset()
        for line in lines:
            self.display.record(line.get("message", ""), line.get("level", "info"), line.get("at"))
        return stats.state

    def _restart(self) -> None:
        """Opens a (new) browser and worker page once the backoff's wait is over. A lost page's
        slices are not lost: its socket closed with it, and the scheduler puts every slice of a
        closed socket back in the queue for another worker."""
        if self.page is not None:
            self._forget_lost_page(self.page)
            self.page = None
        self.stop.wait(self.backoff.next_wait())
        if self._should_stop():
            return
        try:
            self.page = WorkerPage.open(self.playwright, self.options)
        except BrowserMissing:
            raise
        except Exception as error:
            self.display.say(
                f"could not open the worker page of {self.options.scheduler}: "
                f"{_first_line(error)}; trying again in {self.backoff.upcoming:g} s"
            )

    def _forget_lost_page(self, page: WorkerPage) -> None:
        wait = self.backoff.upcoming
        when = f" in {wait:g} s" if wait else ""
        self.display.say(
            f"{page.lost}: restarting it{when} (the slices it held go back to the scheduler)"
        )
        page.close()
        self.totals.page_lost("restarting")
        self.display.status(status_line(self.totals))

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
