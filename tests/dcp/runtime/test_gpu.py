"""`from dcp import gpu` under CPython: the GPU contract in local_exec (wgpu-py on the machine's
own GPU; without one, Mesa's lavapipe, which `make test` installs), GPU time reported with each
result, and clear errors for what the GPU cannot take."""

from __future__ import annotations

import array

import pytest

import dcp
from dcp.runtime import gpu
from dcp.runtime.slice import SliceRuntime
from testkit import gpu_contract


@pytest.fixture(scope="module", autouse=True)
def _a_gpu() -> None:
    pytest.importorskip("wgpu", reason="wgpu-py is not installed: pip install wgpu")
    if not gpu.available():
        pytest.skip(
            f"no GPU adapter here (make test installs Mesa's lavapipe): {gpu._State.failure}"
        )


class Quiet:
    def report_progress(self, value: float | None) -> None:
        pass

    def console(self, level: str, message: str) -> None:
        pass


def test_the_gpu_contract_passes_in_local_exec() -> None:
    job = dcp.compute_for(list(gpu_contract.PYTHON_CASES), gpu_contract.PYTHON_WORK)

    values = job.local_exec(progress_bar=False).values()

    for case, value in zip(gpu_contract.PYTHON_CASES, values, strict=True):
        assert gpu_contract.check(case, value), (case, value)


def test_a_slice_that_used_the_gpu_reports_its_gpu_time_and_one_that_did_not_reports_none() -> None:
    source = (
        "from dcp import gpu\n"
        f"DOUBLE = {gpu_contract.DOUBLE_PLUS_ONE!r}\n"
        "def work(use_gpu):\n"
        "    return gpu.run(DOUBLE, [[1, 2, 3]], 1)[0] if use_gpu else [0]\n"
    )
    runtime = SliceRuntime(source, [], Quiet())

    used = runtime.run(1, True)
    unused = runtime.run(2, False)

    assert used["value"] == [3, 5, 7] and used["gpuMs"] > 0  # type: ignore[index]
    assert unused == {"type": "result", "value": [0]}


def test_several_dispatches_reuse_a_buffer_without_reading_it_back() -> None:
    data = gpu.buffer(array.array("I", range(100)))

    for _ in range(3):
        gpu.run(gpu_contract.DOUBLE_PLUS_ONE, [data], 2)

    expected = list(range(100))
    for _ in range(3):
        expected = [2 * v + 1 for v in expected]
    assert data.read() == array.array("I", expected)


def test_buffers_refuse_what_the_gpu_cannot_hold() -> None:
    with pytest.raises(TypeError, match=r"takes a list, array\.array, bytes or memoryview"):
        gpu.buffer("text")
    with pytest.raises(ValueError, match="dtype must be 'f32', 'i32' or 'u32'"):
        gpu.buffer([1, 2], "f64")
    with pytest.raises(ValueError, match="do not fit u32"):
        gpu.buffer([-1], "u32")
    with pytest.raises(ValueError, match="needs data or length"):
        gpu.buffer()


def test_a_dispatch_with_the_wrong_buffers_says_what_the_shader_declares() -> None:
    with pytest.raises(gpu.GPUError, match=r"declares @binding\(0\); 2 buffer\(s\) were given"):
        gpu.run(gpu_contract.DOUBLE_PLUS_ONE, [[1], [2]], 1)
