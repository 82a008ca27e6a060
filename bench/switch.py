"""Job switches in a real sandbox pool in headless Chromium: how long the first slice of a new job
takes when every job gets a fresh sandbox, beside a cold start measured in the same run, and how
many Worker interpreters are alive meanwhile. Prints one JSON line.

The pool has one place for jobs (size 1), so each switch terminates the previous job's sandbox
and takes the warm reserve. A switch is timed in the page, from the pool's run() of the new
job's first slice to its result. "warm" switches wait until the reserve is ready (the usual
case: a job's slices last longer than a reserve takes to start); "back to back" switches start
the next job at once, so the reserve may still be starting (from the page's Pyodide snapshot).
No portal: testkit.worker_site serves the worker files as the portal does, and the sandbox
tests' harness page.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from itertools import count
from typing import Any

from testkit.livesite import CHROMIUM, CHROMIUM_ARGS, REPO
from testkit.worker_site import PYODIDE_MODULE, WorkerSite

SWITCHES = int(os.environ.get("BENCH_SWITCHES", "10"))
HARNESS = REPO / "tests" / "sandbox" / "harness.html"
POOL_SIZE = 1
SOURCES = {
    "python": "def work(x):\n    return x + {n}\n",
    "js": "(x) => x + {n}",
}

_job_numbers = count(1)


class PoolPage:
    """A fresh harness page (so no Pyodide snapshot yet) with one pool of POOL_SIZE."""

    def __init__(self, browser: Any, origin: str) -> None:
        self.page = browser.new_page()
        self.page.set_default_timeout(120_000)
        self.page.goto(f"{origin}/harness.html")
        self.page.wait_for_function("window.harnessReady === true")
        self.new_pool()
        self.workers_alive_max = 0

    def new_pool(self) -> None:
        self.page.evaluate("(size) => newPool('bench', {size})", POOL_SIZE)

    def first_slice_ms(self, language: str, *, wait_for_reserve: bool) -> float:
        """Runs a new job's first slice; the page's milliseconds from request to result."""
        if wait_for_reserve:
            self.page.evaluate("reserveReady('bench')")
            self.count_workers()
        number = next(_job_numbers)
        job = {
            "id": f"{language}-{number}",
            "language": language,
            "source": SOURCES[language].format(n=number),
            "args": [],
        }
        outcome = self.page.evaluate(
            "([job]) => runSlice('bench', job, 1, 1, {})",
            [job],
        )
        assert outcome.get("value") == 1 + number, outcome
        return float(outcome["ms"])

    def count_workers(self) -> None:
        """Worker threads of the page, as the browser reports them (sampled when it is quiet:
        a terminated Worker takes a moment to be reported gone)."""
        self.workers_alive_max = max(self.workers_alive_max, len(self.page.workers))

    def close(self) -> None:
        self.page.close()


def percentiles(name: str, samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[max(0, math.ceil(len(ordered) * 0.95) - 1)]  # nearest rank
    return {
        f"{name}_p50_ms": round(statistics.median(ordered), 1),
        f"{name}_p95_ms": round(p95, 1),
    }


def measure(browser: Any, origin: str, language: str) -> dict[str, Any]:
    pool = PoolPage(browser, origin)
    try:
        cold = pool.first_slice_ms(language, wait_for_reserve=False)
        figures: dict[str, Any] = {f"{language}_cold_start_ms": round(cold)}
        warm = [pool.first_slice_ms(language, wait_for_reserve=True) for _ in range(SWITCHES)]
        figures.update(percentiles(f"{language}_switch", warm))
        back_to_back = [
            pool.first_slice_ms(language, wait_for_reserve=False) for _ in range(SWITCHES)
        ]
        figures.update(percentiles(f"{language}_back_to_back_switch", back_to_back))
        if language == "python":
            # A new pool on the same page: no reserve yet, but the page's snapshot.
            pool.new_pool()
            fresh = pool.first_slice_ms(language, wait_for_reserve=False)
            figures["python_fresh_sandbox_from_snapshot_ms"] = round(fresh)
        figures[f"{language}_workers_alive_max"] = pool.workers_alive_max
        return figures
    finally:
        pool.close()


def main() -> None:
    from playwright.sync_api import sync_playwright

    if not PYODIDE_MODULE.exists():
        raise SystemExit("Pyodide is not vendored: run `make frontend` first")
    figures: dict[str, Any] = {"benchmark": "switch", "pool_size": POOL_SIZE, "switches": SWITCHES}
    site = WorkerSite({"/harness.html": HARNESS}, cache_pyodide=True)
    with site as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for language in ("python", "js"):
                figures.update(measure(browser, server.origin, language))
        finally:
            browser.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
