"""The programs in examples/ run against a scheduler from the environment and print results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .fake_scheduler import FakeScheduler

pytestmark: list[pytest.MarkDecorator] = []

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def computing_scheduler(scheduler: FakeScheduler) -> FakeScheduler:
    scheduler.evaluate = True  # results are the work functions' own
    return scheduler


def run_example(scheduler: FakeScheduler, *command: str) -> str:
    env = {**os.environ, "DCP_SCHEDULER_URL": scheduler.url}  # DCP_HOMEDIR: the test's home
    done = subprocess.run(
        [sys.executable, *command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("script", "printed"),
    [
        ("squares.py", "[1, 4, 9, 16, 25, 36, 49, 64, 81, 100]"),
        ("uppercase.py", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        ("pi_monte_carlo.py", "pi is about 3.14"),
    ],
)
def test_an_example_deploys_its_job_and_prints_its_results(
    computing_scheduler, keystores, script, printed
):
    assert printed in run_example(computing_scheduler, str(EXAMPLES / script))
    deploy = computing_scheduler.requests("deploy")[0]
    assert deploy["public"]["name"]


def test_the_pi_example_uses_a_grouped_range(computing_scheduler, keystores):
    run_example(computing_scheduler, str(EXAMPLES / "pi_monte_carlo.py"))
    deploy = computing_scheduler.requests("deploy")[0]
    assert deploy["input"] == {"kind": "range", "start": 1, "end": 100, "step": 1, "group": 10}


def test_an_example_runs_locally_without_a_scheduler(tmp_path):
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "squares.py"), "--local"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "DCP_SCHEDULER_URL": "http://127.0.0.1:9"},
    )
    assert done.returncode == 0, done.stderr
    assert "[1, 4, 9, 16, 25, 36, 49, 64, 81, 100]" in done.stdout


def test_the_notebook_deploys_from_inside_a_running_event_loop(
    computing_scheduler, keystores, tmp_path
):
    notebook = json.loads((EXAMPLES / "deploy_job.ipynb").read_text())
    code = "\n\n".join(
        "".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"
    )
    # A kernel runs cells while its event loop runs: so does this script.
    script = tmp_path / "notebook_cells.py"
    script.write_text(
        "import asyncio\n\n\nasync def cells():\n"
        + textwrap.indent(code, "    ")
        + "\n\n\nasyncio.run(cells())\n"
    )
    printed = run_example(computing_scheduler, str(script))
    assert "[1, 4, 9, 16, 25, 36, 49, 64, 81, 100]" in printed


def test_the_gpu_example_asks_for_a_webgpu_worker_and_saves_its_picture(
    computing_scheduler, keystores, tmp_path
):
    pytest.importorskip("wgpu", reason="wgpu-py is not installed: pip install wgpu")
    from dcp.runtime import gpu

    if not gpu.available():
        pytest.skip("no GPU adapter here (make test installs Mesa's lavapipe)")
    picture = tmp_path / "mandelbrot.png"

    printed = run_example(
        computing_scheduler,
        str(EXAMPLES / "gpu_mandelbrot.py"),
        "--size",
        "128",
        "--out",
        str(picture),
    )

    assert "128x128 pixels from 4 GPU tiles" in printed
    assert picture.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    deploy = computing_scheduler.requests("deploy")[0]
    assert deploy["requirements"] == {"environment": {"webgpu": True}}


def test_the_readmes_gpu_example_runs_as_printed(tmp_path):
    pytest.importorskip("wgpu", reason="wgpu-py is not installed: pip install wgpu")
    from dcp.runtime import gpu

    if not gpu.available():
        pytest.skip("no GPU adapter here (make test installs Mesa's lavapipe)")
    readme = (EXAMPLES.parent / "README.md").read_text()
    section = readme.split("## GPU work functions", 1)[1].split("\n## ", 1)[0]
    program = section.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "readme_gpu.py"
    script.write_text(program)

    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[[1.0, 3.0, 5.0, 7.0]]", "[[2, 4, 6]]"]
