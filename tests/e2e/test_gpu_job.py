"""A GPU job deployed from Python is computed on a Worker tab's WebGPU (SwiftShader in Chromium):
matrix-multiply tiles written as a `@gpu.kernel`, exact against the CPU, with GPU time metered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from testkit.livesite import LiveSite
from tests.e2e.conftest import deploy_in_background, volunteer_in, wait_for
from tests.e2e.portal_flows import Person, start_worker

N, TILE = 32, 16  # a 32x32 integer matrix product in four 16x16 tiles

GPU_MATMUL = f"""
import json, dcp

N, TILE = {N}, {TILE}
A = [(r * 3 + c * 5) % 17 - 8 for r in range(N) for c in range(N)]
B = [(r * 7 + c) % 13 - 6 for r in range(N) for c in range(N)]


def work(tile, a, b, width, size):
    from dcp import gpu
    from dcp.gpu import Array, i32

    @gpu.kernel
    def product(i, a: Array[i32], b: Array[i32], c: Array[i32], width: i32, size: i32,
                row0: i32, col0: i32):
        row = row0 + i // size
        col = col0 + i % size
        acc = 0
        for k in range(width):
            acc += a[row * width + k] * b[k * width + col]
        c[i] = acc

    row, col = tile
    return product(a, b, [0] * (size * size), width, size, row * size, col * size)


tiles = [[row, col] for row in range(N // TILE) for col in range(N // TILE)]
job = dcp.compute_for(tiles, work, args=[A, B, N, TILE])
results = job.exec(slice_payment_offer="0.01")
expected = [
    [sum(A[(r * TILE + i // TILE) * N + k] * B[k * N + c * TILE + i % TILE] for k in range(N))
     for i in range(TILE * TILE)]
    for r, c in tiles
]
print(json.dumps({{"job": job.id, "exact": results.values() == expected,
                  "requirements": job.requirements}}))
"""


@pytest.fixture
def gpu_volunteer(webgpu_browser: Any, portal_site: LiveSite) -> Iterator[Person]:
    """A volunteer whose browser has a WebGPU adapter."""
    yield from volunteer_in(webgpu_browser, portal_site)


def test_a_gpu_job_from_python_is_computed_exactly_on_a_worker_tabs_gpu(
    payer: Person, gpu_volunteer: Person, portal_site: LiveSite
) -> None:
    worker_page = gpu_volunteer.page
    start_worker(worker_page, portal_site)
    gpu_line = worker_page.locator('[data-testid="worker-gpu"]')
    gpu_line.filter(has_text="GPU: ").filter(has_not_text="looking").wait_for()
    assert "none found" not in gpu_line.inner_text()
    assert worker_page.locator('[data-testid="use-gpu"]').is_checked()

    thread, outcome = deploy_in_background(portal_site, payer.home, GPU_MATMUL)
    result = wait_for(worker_page, thread, outcome, seconds=300)

    assert result["exact"] is True
    [(needs_webgpu, gpu_ms)] = portal_site.query(
        "SELECT needs_webgpu, gpu_ms FROM scheduler_job WHERE id = ?", (result["job"],)
    )
    assert needs_webgpu == 1  # the client saw dcp.gpu in the work function
    assert gpu_ms > 0
    payer.page.goto(f"{portal_site.url}/portal/jobs/")
    payer.page.locator('[data-testid="job-gpu-time"]').first.wait_for()
