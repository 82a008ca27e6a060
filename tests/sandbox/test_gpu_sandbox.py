"""GPU work functions in the browser sandbox, on a real WebGPU adapter (SwiftShader in Chromium).

The GPU contract (testkit/gpu_contract.py) runs as Python (`from dcp import gpu`, raw WGSL and
`@gpu.kernel`, waiting on WebGPU through JSPI) and as JavaScript (the `gpu` global); each answer
matches the CPU's, and GPU time comes back with each result. A shader that does not compile
fails its slice with the compiler's message, and the same sandbox goes on computing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit import gpu_contract
from testkit.worker_site import WorkerSite
from tests.worker_files import require_vendored_pyodide

pytestmark = pytest.mark.e2e

HARNESS = Path(__file__).with_name("harness.html")
SLICE_TIMEOUT_MS = 120_000  # the first slice loads Pyodide; SwiftShader compiles shaders slowly

require_vendored_pyodide()


@pytest.fixture(autouse=True)
def _fast_secrets() -> None:
    """Overrides the autouse fixture of tests/conftest.py: these tests need no Django."""


@pytest.fixture(scope="module")
def gpu_page(webgpu_browser: Any) -> Iterator[Any]:
    with WorkerSite({"/harness.html": HARNESS}) as site:
        context = webgpu_browser.new_context()
        context.set_default_timeout(SLICE_TIMEOUT_MS)
        page = context.new_page()
        page.goto(f"{site.origin}/harness.html")
        page.wait_for_function("window.harnessReady === true")
        page.evaluate("newPool('gpu', {size: 1})")
        yield page
        context.close()


def run_cases(page: Any, job: dict[str, Any], cases: tuple[str, ...]) -> dict[str, Any]:
    """Every case as one slice of `job`, in order, in the same sandbox: {case: outcome}."""
    return {  # type: ignore[no-any-return]
        case: page.evaluate(
            "([job, n, datum]) => runSlice('gpu', job, n, datum)", [job, number, case]
        )
        for number, case in enumerate(cases, start=1)
    }


def test_the_gpu_contract_passes_in_python_and_javascript_work_functions(gpu_page: Any) -> None:
    python_job = {"id": "gpu-py", "language": "python", "source": gpu_contract.PYTHON_WORK}
    js_job = {"id": "gpu-js", "language": "js", "source": gpu_contract.JS_WORK}

    python = run_cases(gpu_page, python_job, gpu_contract.PYTHON_CASES)
    javascript = run_cases(gpu_page, js_job, gpu_contract.JS_CASES)

    for language, outcomes in (("python", python), ("js", javascript)):
        for case, outcome in outcomes.items():
            assert outcome.get("error") is None, (language, case, outcome)
            assert gpu_contract.check(case, outcome["value"], language), (language, case, outcome)
    assert python["device_facts"]["value"]["available"] is True
    # GPU time is measured where the GPU was used, and only there
    assert python["raw_two_dispatches"]["gpuMs"] > 0
    assert javascript["raw_two_dispatches"]["gpuMs"] > 0
    assert python["device_facts"].get("gpuMs") is None


def test_a_shader_that_does_not_compile_fails_its_slice_and_the_sandbox_goes_on(
    gpu_page: Any,
) -> None:
    source = (
        "from dcp import gpu\n"
        f"BROKEN = {gpu_contract.BROKEN_WGSL!r}\n"
        f"DOUBLE = {gpu_contract.DOUBLE_PLUS_ONE!r}\n"
        "def work(broken):\n"
        "    if broken:\n"
        "        gpu.run(BROKEN, [gpu.buffer([1, 2], 'u32')], 1)\n"
        "    return gpu.run(DOUBLE, [[1, 2, 3]], 1)[0]\n"
    )
    job = {"id": "gpu-broken", "language": "python", "source": source}

    failed = gpu_page.evaluate("(job) => runSlice('gpu', job, 1, true)", job)
    computed = gpu_page.evaluate("(job) => runSlice('gpu', job, 2, false)", job)

    assert failed["error"]["name"] == "GPUError"
    assert "undefined_name" in failed["error"]["message"], failed
    assert computed.get("error") is None, computed
    assert computed["value"] == [3, 5, 7]


def test_a_lost_device_fails_its_slice_and_the_next_slice_gets_a_new_one(gpu_page: Any) -> None:
    python = {
        "id": "gpu-lost-py",
        "language": "python",
        "source": (
            "from dcp import gpu\n"
            f"DOUBLE = {gpu_contract.DOUBLE_PLUS_ONE!r}\n"
            "def work(lose):\n"
            "    if lose:\n"
            "        gpu.device().destroy()\n"
            "    return gpu.run(DOUBLE, [[1, 2, 3]], 1)[0]\n"
        ),
    }
    js = {
        "id": "gpu-lost-js",
        "language": "js",
        "source": (
            f"const DOUBLE = {gpu_contract.DOUBLE_PLUS_ONE!r};\n"
            "async function work(lose) {\n"
            "  if (lose) (await gpu.device()).destroy();\n"
            "  const [out] = await gpu.run(DOUBLE, [new Uint32Array([1, 2, 3])], 1);\n"
            "  return Array.from(out);\n"
            "}\n"
        ),
    }

    for job in (python, js):
        lost = gpu_page.evaluate("(job) => runSlice('gpu', job, 1, true)", job)
        again = gpu_page.evaluate("(job) => runSlice('gpu', job, 2, false)", job)

        assert lost["error"]["name"] == "GPUError", (job["language"], lost)
        assert "lost" in lost["error"]["message"], (job["language"], lost)
        assert again.get("error") is None, (job["language"], again)
        assert again["value"] == [3, 5, 7], job["language"]


def test_a_pool_told_not_to_use_the_gpu_gives_its_sandboxes_none(gpu_page: Any) -> None:
    gpu_page.evaluate("newPool('no-gpu', {size: 1, gpu: false})")
    python = {
        "id": "no-gpu-py",
        "language": "python",
        "source": "from dcp import gpu\ndef work(x):\n    return gpu.available()\n",
    }
    js = {
        "id": "no-gpu-js",
        "language": "js",
        "source": (
            "async function work(x) {\n"
            "  try { navigator.gpu; } catch (error) { return `${error.name}: ${error.message}`; }\n"
            "  return 'navigator.gpu is there';\n"
            "}\n"
        ),
    }

    from_python = gpu_page.evaluate("(job) => runSlice('no-gpu', job, 1, 0)", python)
    from_js = gpu_page.evaluate("(job) => runSlice('no-gpu', job, 1, 0)", js)
    gpu_page.evaluate("poolTerminate('no-gpu')")

    assert from_python["value"] is False
    assert from_js["value"] == "SandboxDeviceError: device access is not allowed in a sandbox"
