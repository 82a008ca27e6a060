"""A work function that uses the GPU: deployed requiring WebGPU workers, its kernels checked
before anything is deployed."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import pytest

import dcp

from .conftest import ACCOUNT_KEY, KEYS

pytestmark: list[pytest.MarkDecorator] = []


def gpu_work(x):
    if x < 0:  # never here: dcp.gpu needs a GPU, and these slices run nowhere near one
        from dcp import gpu

        return gpu.available()
    return x * 2


def bad_kernel_work(n):
    from dcp import gpu

    @gpu.kernel
    def count_down(i, x: gpu.Array[gpu.f32]):
        while x[i] > 0:  # GPU kernels have no while loops
            x[i] = x[i] - 1.0

    return count_down(gpu.buffer([float(n)]))


def line_of(text: str) -> int:
    """The line of this file that holds `text`."""
    lines = Path(__file__).read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def test_a_job_whose_work_function_imports_dcp_gpu_is_deployed_requiring_webgpu(scheduler):
    job = dcp.compute_for(1, 3, gpu_work, requirements={"discrete": True})

    job.exec(**KEYS)

    deploy = scheduler.requests("deploy")[0]
    assert deploy["requirements"] == {"environment": {"webgpu": True}, "discrete": True}
    assert job.requirements == {"discrete": True}  # the user's own, as set


def test_a_javascript_work_function_using_gpu_requires_webgpu_and_others_require_nothing():
    js = dcp.compute_for([1], "async (x) => (await gpu.device()) && x", language="js")
    plain = dcp.compute_for([1], "(x) => x.gpu", language="js")

    assert js.deploy_frame(Decimal("0.01"), ACCOUNT_KEY)["requirements"] == {
        "environment": {"webgpu": True}
    }
    assert "requirements" not in plain.deploy_frame(Decimal("0.01"), ACCOUNT_KEY)


def test_a_gpu_work_function_whose_requirements_refuse_webgpu_is_not_deployed(scheduler):
    job = dcp.compute_for(1, 3, gpu_work, requirements={"environment": {"webgpu": False}})

    with pytest.raises(dcp.DCPError) as caught:
        job.exec(**KEYS)

    assert caught.value.code == "EINVALID"
    assert "the work function uses the GPU, but the job's requirements refuse WebGPU" in str(
        caught.value
    )
    assert scheduler.requests("hello") == scheduler.requests("deploy") == []


def test_local_exec_of_a_gpu_work_function_ignores_the_requirements():
    job = dcp.compute_for(1, 3, gpu_work, requirements={"environment": {"webgpu": False}})

    assert list(job.local_exec(progress_bar=False)) == [2, 4, 6]


def test_a_work_function_without_kernels_never_loads_the_translator(monkeypatch):
    monkeypatch.setitem(sys.modules, "dcp.runtime.wgsl", None)  # importing it would fail

    job = dcp.compute_for(1, 3, lambda x: x * 2)

    assert job.work is not None


def test_a_kernel_that_cannot_run_on_a_gpu_fails_naming_its_line_and_nothing_is_deployed(
    scheduler,
):
    with pytest.raises(dcp.DCPError) as caught:
        dcp.compute_for(1, 3, bad_kernel_work).exec(**KEYS)

    message = str(caught.value)
    assert caught.value.code == "EINVALID"
    assert f"{__file__}, line {line_of('while x[i] > 0:')}" in message
    assert "while" in message
    assert scheduler.requests("hello") == scheduler.requests("deploy") == []


def test_a_bad_kernel_in_a_source_string_is_named_by_its_line_in_the_string():
    source = (
        "from dcp import gpu\n"
        "\n"
        "@gpu.kernel\n"
        "def count_down(i, x: gpu.Array[gpu.f32]):\n"
        "    while x[i] > 0:\n"
        "        x[i] = x[i] - 1.0\n"
        "\n"
        "def work(n):\n"
        "    return count_down(gpu.buffer([float(n)]))\n"
    )

    with pytest.raises(dcp.DCPError, match=r"<work function>, line 5\b") as caught:
        dcp.compute_for(1, 3, source)

    assert caught.value.code == "EINVALID"
