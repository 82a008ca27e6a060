"""GPU kernels against pure Python on the same work, in the same place. Prints one JSON line.

Two pieces of work, each as a `@gpu.kernel` and as plain Python: a 256x256 f32 matrix multiply
and a 256x256 Mandelbrot tile (200 steps at most). They run as slices of one Python job:

- in a browser sandbox in headless Chromium with SwiftShader's WebGPU (a software GPU: real
  WebGPU, slow), beside the same work in pure Python in the same sandbox (Pyodide);
- under CPython with wgpu-py's native backend (lavapipe, Mesa's software Vulkan, where the
  machine has no GPU), beside the same work in pure Python in CPython.

Each slice times its own work (Pyodide's start and the first shader compilation excluded: the
kernel runs once untimed first). The figures: milliseconds per run and python/gpu ratios. No
code changes on a real GPU; only the figures do. `BENCH_GPU_N` sets the size (default 256).
"""

from __future__ import annotations

import json
import os
from typing import Any

from dcp.runtime.slice import SliceRuntime
from testkit.livesite import CHROMIUM, REPO, WEBGPU_CHROMIUM_ARGS
from testkit.worker_site import WorkerSite

N = int(os.environ.get("BENCH_GPU_N", "256"))
MAX_ITER = 200
HARNESS = REPO / "tests" / "sandbox" / "harness.html"
CASES = ("matmul_gpu", "matmul_python", "mandelbrot_gpu", "mandelbrot_python")

WORK = f"""
import time
from dcp import gpu
from dcp.gpu import Array, f32, i32

N = {N}
MAX_ITER = {MAX_ITER}
"""
WORK += """

@gpu.kernel
def matmul(i, a: Array[f32], b: Array[f32], c: Array[f32]):
    row = i // N
    col = i % N
    acc = 0.0
    for k in range(N):
        acc += a[row * N + k] * b[k * N + col]
    c[i] = acc


@gpu.kernel
def escape(i, x0: f32, y0: f32, step: f32, limit: i32, out: Array[i32]):
    cx = x0 + (i % N) * step
    cy = y0 + (i // N) * step
    x = 0.0
    y = 0.0
    steps = 0
    for k in range(limit):
        if x * x + y * y > 4.0:
            break
        x_next = x * x - y * y + cx
        y = 2.0 * x * y + cy
        x = x_next
        steps += 1
    out[i] = steps


def matrices():
    a = [((r * 7 + c * 3) % 11) / 4 for r in range(N) for c in range(N)]
    b = [((r * 5 + c) % 13) / 8 for r in range(N) for c in range(N)]
    return a, b


def matmul_python(a, b):
    c = [0.0] * (N * N)
    for row in range(N):
        a_row = a[row * N:(row + 1) * N]
        for col in range(N):
            c[row * N + col] = sum(x * b[k * N + col] for k, x in enumerate(a_row))
    return c


def escape_python(x0, y0, step, limit):
    out = []
    for i in range(N * N):
        cx, cy = x0 + (i % N) * step, y0 + (i // N) * step
        x = y = 0.0
        steps = 0
        for _ in range(limit):
            if x * x + y * y > 4.0:
                break
            x, y = x * x - y * y + cx, 2.0 * x * y + cy
            steps += 1
        out.append(steps)
    return out


def timed(run):
    started = time.perf_counter()
    value = run()
    return {"ms": (time.perf_counter() - started) * 1000, "checksum": round(sum(value), 1)}


def work(case):
    a, b = matrices()
    view = (-2.2, -1.5, 3.0 / N, MAX_ITER)
    if case == "matmul_gpu":
        matmul(a, b, [0.0] * (N * N))  # compiles the shader
        return timed(lambda: matmul(a, b, [0.0] * (N * N)))
    if case == "matmul_python":
        return timed(lambda: matmul_python(a, b))
    if case == "mandelbrot_gpu":
        escape(*view, [0] * (N * N))
        return timed(lambda: escape(*view, [0] * (N * N)))
    return timed(lambda: escape_python(*view))
"""


def figures(outcomes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{work: {gpu_ms, python_ms, python_over_gpu, checksums_agree}}."""
    result = {}
    for name in ("matmul", "mandelbrot"):
        on_gpu, in_python = outcomes[f"{name}_gpu"], outcomes[f"{name}_python"]
        agree = abs(on_gpu["checksum"] - in_python["checksum"]) <= 1e-4 * max(
            1.0, abs(in_python["checksum"])
        )
        result[f"{name}_{N}"] = {
            "gpu_ms": round(on_gpu["ms"], 1),
            "python_ms": round(in_python["ms"], 1),
            "python_over_gpu": round(in_python["ms"] / on_gpu["ms"], 2),
            "checksums_agree": agree,
        }
    return result


def in_browser() -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with WorkerSite({"/harness.html": HARNESS}) as site, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=WEBGPU_CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(600_000)
        page.goto(f"{site.origin}/harness.html")
        page.wait_for_function("window.harnessReady === true")
        page.evaluate("newPool('bench', {size: 1})")
        job = {"id": "bench-gpu", "language": "python", "source": WORK}
        outcomes = {}
        for number, case in enumerate(CASES, start=1):
            outcome = page.evaluate(
                "([job, n, name]) => runSlice('bench', job, n, name)", [job, number, case]
            )
            if outcome.get("error"):
                raise SystemExit(f"{case} failed in the browser: {outcome['error']}")
            outcomes[case] = outcome["value"]
        adapter = page.evaluate(
            "async () => { const a = await navigator.gpu.requestAdapter();"
            " return `${a.info.vendor} ${a.info.architecture}`; }"
        )
        browser.close()
    return {"adapter": adapter, **figures(outcomes)}


class _Quiet:
    def report_progress(self, value: float | None) -> None:
        pass

    def console(self, level: str, message: str) -> None:
        pass


def native() -> dict[str, Any]:
    from dcp.runtime import gpu

    if not gpu.available():
        return {"skipped": f"no native GPU adapter: {gpu._State.failure}"}
    runtime = SliceRuntime(WORK, [], _Quiet())
    outcomes = {}
    for number, case in enumerate(CASES, start=1):
        reply = runtime.run(number, case)
        if not isinstance(reply, dict) or reply["type"] != "result":
            raise SystemExit(f"{case} failed under CPython: {reply}")
        outcomes[case] = reply["value"]
    return {"adapter": gpu.adapter_info()["device"], **figures(outcomes)}


def main() -> None:
    print(
        json.dumps(
            {
                "bench": "gpu",
                "n": N,
                "browser_swiftshader": in_browser(),
                "cpython_native": native(),
            }
        )
    )


if __name__ == "__main__":
    main()
