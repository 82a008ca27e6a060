"""Deploy to first result for a Python job that requires one package (a pure-Python wheel of
BENCH_PACKAGE_KIB KiB), on real Worker tabs in headless Chromium, 1 core each. Prints one JSON
line; each figure is seconds from exec() to the job's first `result` event:

- `first_tab_no_package_s`: the browser's first tab, a job without the package (a warm-up);
- `cold_s`: a fresh tab that has never fetched the package (nor loaded Pyodide);
- `cached_s`: a second job with the same package on the same tab, which fetches nothing from the
  portal (the page keeps what it fetched: worker_static/store-cache.js);
- `cached_no_package_s`: then a job without the package on that tab;
- `cold_no_package_s`, `warm_fetch_s`: another fresh tab, a job without the package, then the
  package job (Pyodide loaded already, the package fetched).

`*_wheel_gets` counts the GETs of the wheel in the portal's access log during each job (1, 0,
1), so that the figures show the cache at work.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dcp
from bench.browser import open_worker_tab
from bench.harness import Portal, start_portal
from bench.throughput import quiet_exec
from testkit.livesite import CHROMIUM, CHROMIUM_ARGS
from testkit.wheels import make_wheel

PACKAGE_KIB = int(os.environ.get("BENCH_PACKAGE_KIB", "512"))
# Before each measured job: time for the tab's reserve sandbox (sandbox-pool.js) to finish
# starting, so that a job does not wait for the previous one's replacement to load Pyodide.
SETTLE_S = float(os.environ.get("BENCH_SETTLE_S", "5"))
MODULE_KIB = 16  # the package is split into modules of about this size, as real ones are
WITH_PACKAGE = "def work(x):\n    import benchpkg\n    return benchpkg.answer(x)\n"
WITHOUT_PACKAGE = "def work(x):\n    return x * 2\n"  # the same answer


@dataclass
class Wheel:
    path: Path
    sha256: str

    @property
    def kib(self) -> float:
        return self.path.stat().st_size / 1024


def module_source(index: int, kib: int) -> str:
    """One module of generated functions, about `kib` KiB of source."""
    parts = [f'"""Part {index} of the benchmark package."""\n']
    size, number = len(parts[0]), 0
    while size < kib * 1024:
        function = (
            f'\n\ndef f{number}(x):\n    """x scaled by {number}."""\n    return x * {number}\n'
        )
        parts.append(function)
        size, number = size + len(function), number + 1
    return "".join(parts)


def build_wheel(folder: Path, kib: int) -> Wheel:
    """The pure-Python wheel `benchpkg` of about `kib` KiB, written to `folder`. Its
    `__init__` imports one module; the rest are shipped, not imported (most of a real package
    is not used by one work function)."""
    if kib < MODULE_KIB:
        raise ValueError(f"BENCH_PACKAGE_KIB must be at least {MODULE_KIB}, not {kib}")
    files = {f"benchpkg/part{i}.py": module_source(i, MODULE_KIB) for i in range(kib // MODULE_KIB)}
    files["benchpkg/__init__.py"] = "from .part0 import f2\n\n\ndef answer(x):\n    return f2(x)\n"
    name, data = make_wheel("benchpkg", "1.0", files)
    path = folder / name
    path.write_bytes(data)
    return Wheel(path=path, sha256=hashlib.sha256(data).hexdigest())


def deploy_timed(code: str, wheel: Wheel | None) -> dict[str, float]:
    """Runs a one-slice job (requiring `wheel`, if any) once the tab has settled, and returns
    seconds from exec() to `accepted` (the client's store uploads and the deploy) and to the
    first `result` event."""
    job = dcp.compute_for([20], code)
    if wheel is not None:
        job.requires(str(wheel.path))
    seen: dict[str, float] = {}
    job.on("accepted", lambda _: seen.setdefault("accepted", time.perf_counter()))
    job.on("result", lambda _: seen.setdefault("result", time.perf_counter()))
    time.sleep(SETTLE_S)
    started = time.perf_counter()
    results = quiet_exec(job, "0")
    if results.values() != [40]:
        raise RuntimeError(f"the job computed {results.values()!r}, not [40]")
    return {key: seen[key] - started for key in ("accepted", "result")}


def wheel_gets(portal: Portal, wheel: Wheel) -> int:
    """How many times the portal has served the wheel from its store so far."""
    return portal.site.requests_seen().count(f'"GET /store/{wheel.sha256}')


def with_package(case: str, portal: Portal, wheel: Wheel) -> dict[str, Any]:
    """A job requiring `wheel`, timed, with the wheel's GETs the portal served during it."""
    before = wheel_gets(portal, wheel)
    times = deploy_timed(WITH_PACKAGE, wheel)
    return {
        f"{case}_s": round(times["result"], 2),
        f"{case}_accepted_s": round(times["accepted"], 3),
        f"{case}_wheel_gets": wheel_gets(portal, wheel) - before,
    }


def without_package(case: str) -> dict[str, float]:
    """A job without the package, timed."""
    return {f"{case}_s": round(deploy_timed(WITHOUT_PACKAGE, None)["result"], 2)}


def first_tab(browser: Any, portal: Portal) -> dict[str, float]:
    """The browser's first tab, with a job without the package: Chromium's first Pyodide and the
    portal's first serving of Pyodide's files, which the fresh tabs measured after it do not
    pay again (their HTTP caches are their own), so that they compare with each other."""
    page = open_worker_tab(browser, portal.site.url)
    figures = without_package("first_tab_no_package")
    page.context.close()
    return figures


def package_tab(browser: Any, portal: Portal, wheel: Wheel) -> dict[str, Any]:
    """A fresh tab: the package job cold (Pyodide and the package both loaded for it), again
    cached, then a job without it; the tab is closed after."""
    page = open_worker_tab(browser, portal.site.url)
    figures = with_package("cold", portal, wheel) | with_package("cached", portal, wheel)
    figures |= without_package("cached_no_package")
    page.context.close()
    return figures


def baseline_tab(browser: Any, portal: Portal, wheel: Wheel) -> dict[str, Any]:
    """Another fresh tab (its own browser context: nothing of the first tab is cached for it):
    a job without the package first, then the package job, fetched on a tab whose Pyodide is
    loaded already."""
    page = open_worker_tab(browser, portal.site.url)
    figures = without_package("cold_no_package") | with_package("warm_fetch", portal, wheel)
    page.context.close()
    return figures


def main() -> None:
    from playwright.sync_api import sync_playwright

    portal = start_portal()
    dcp.init(portal.site.url)
    wheel = build_wheel(portal.home, PACKAGE_KIB)
    figures: dict[str, Any] = {"benchmark": "first_result_with_package"}
    figures.update(package_kib=round(wheel.kib, 1), settle_s=SETTLE_S)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            figures.update(first_tab(browser, portal))
            figures.update(package_tab(browser, portal, wheel))
            figures.update(baseline_tab(browser, portal, wheel))
            browser.close()
    finally:
        portal.stop()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
