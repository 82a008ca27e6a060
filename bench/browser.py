"""Real Worker tabs in headless Chromium: Pyodide cold start, warm per-slice overhead, and a
CPU-bound work function against native CPython measured in the same run. Prints one JSON line.

cold_start_warm_cache_s: a Worker tab opened again later in the same browser profile (the first
tab ran jobs and was closed), from deploy to the first result of a trivial Python job: its
sandboxes start Pyodide from the snapshot the first tab stored.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import dcp
from bench.harness import PASSWORD, start_portal
from bench.throughput import quiet_exec
from testkit.livesite import CHROMIUM, CHROMIUM_ARGS

TRIVIAL = "def work(x):\n    return x + 1\n"
CPU_BOUND = """
def work(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total
"""
CPU_N = int(os.environ.get("BENCH_CPU_N", "3000000"))
WARM_SLICES = int(os.environ.get("BENCH_WARM_SLICES", "200"))


def open_worker_tab(browser: Any, url: str, context: Any = None) -> Any:
    """A started Worker tab: in a new browser context (signed in first), or in `context`."""
    page = (context or browser.new_context()).new_page()
    page.set_default_timeout(120_000)
    if context is None:
        page.goto(f"{url}/accounts/login/")
        page.get_by_label("Email:").fill("worker@example.com")
        page.get_by_label("Password:").fill(PASSWORD)
        page.get_by_role("button", name="Sign In").click()
    page.goto(f"{url}/portal/worker/")
    page.get_by_label("Cores").select_option("1")
    page.get_by_role("button", name="Start").click()
    page.get_by_text("Waiting for work").wait_for()
    return page


def timed(job: Any, offer: str = "0") -> float:
    started = time.perf_counter()
    quiet_exec(job, offer)
    return time.perf_counter() - started


def native_seconds() -> float:
    namespace: dict[str, Any] = {}
    exec(CPU_BOUND, namespace)
    started = time.perf_counter()
    namespace["work"](CPU_N)
    return time.perf_counter() - started


def main() -> None:
    from playwright.sync_api import sync_playwright

    portal = start_portal()
    dcp.init(portal.site.url)
    figures: dict[str, Any] = {"benchmark": "browser"}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            first = open_worker_tab(browser, portal.site.url)
            figures["cold_start_to_first_result_s"] = round(timed(dcp.compute_for([1], TRIVIAL)), 2)
            timed(dcp.compute_for(range(20), TRIVIAL))  # warm the new job path
            elapsed = timed(dcp.compute_for(1, WARM_SLICES, TRIVIAL))
            figures["warm_slice_overhead_ms_1_tab"] = round(elapsed * 1000 / WARM_SLICES, 2)
            browser_cpu = timed(dcp.compute_for([CPU_N], CPU_BOUND))
            native = native_seconds()
            figures["cpu_bound_browser_s"] = round(browser_cpu, 2)
            figures["cpu_bound_cpython_s"] = round(native, 2)
            figures["ratio_vs_cpython"] = round(browser_cpu / native, 2)
            second = open_worker_tab(browser, portal.site.url)
            timed(dcp.compute_for(range(20), TRIVIAL))  # the second tab loads Pyodide
            elapsed = timed(dcp.compute_for(1, WARM_SLICES, TRIVIAL))
            figures["warm_slice_overhead_ms_2_tabs"] = round(elapsed * 1000 / WARM_SLICES, 2)
            figures["slices_per_s_2_tabs"] = round(WARM_SLICES / elapsed, 1)
            second.context.close()
            first.close()
            open_worker_tab(browser, portal.site.url, context=first.context)
            figures["cold_start_warm_cache_s"] = round(timed(dcp.compute_for([1], TRIVIAL)), 2)
            browser.close()
    finally:
        portal.stop()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
