"""job.local_exec(): slices run in local processes with the network's semantics."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import dcp
from testkit.livesite import REPO

pytestmark: list[pytest.MarkDecorator] = []

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def record(job: dcp.Job, *names: str) -> dict[str, list[Any]]:
    seen: dict[str, list[Any]] = {name: [] for name in names}
    for name in names:
        job.on(name, seen[name].append)
    return seen


def square_and_report(x):
    progress("50%")  # noqa: F821 - a global where work functions run
    print("tick")
    print("value", x)
    progress(1)  # noqa: F821
    return x * x


def test_python_slices_run_locally_with_progress_console_and_results():
    job = dcp.compute_for(1, 6, square_and_report)
    seen = record(job, "result", "console", "status", "readystatechange", "complete")
    results = job.local_exec(cores=2, progress_bar=False)

    assert results.values() == [1, 4, 9, 16, 25, 36]
    assert results.key(3) == 3
    assert results.lookup_value(4) == 16
    assert sorted(event["slice"] for event in seen["result"]) == [1, 2, 3, 4, 5, 6]
    messages = [(event["message"], event["count"]) for event in seen["console"]]
    assert messages.count(("tick", 1)) == 6  # each interrupted by its own "value" line
    assert sorted(m for m, _ in messages if m.startswith("value")) == [
        f"value {n}" for n in range(1, 7)
    ]
    assert all(event["level"] == "log" for event in seen["console"])
    assert seen["status"][-1]["status"] == "finished"
    assert seen["readystatechange"] == ["exec", "init", "complete"]
    assert seen["complete"] == [{"total": 6}]


def work_with_args(pair, scale, offset):
    from dcp import progress  # as in the browser sandbox

    progress()
    i, j = pair
    return i * scale + j + offset


def test_products_groups_generators_and_args_run_locally():
    product = dcp.compute_for(dcp.MultiRange((1, 2), (1, 3)), work_with_args, args=[10, 0.5])
    assert product.local_exec().values() == [11.5, 12.5, 13.5, 21.5, 22.5, 23.5]
    grouped = dcp.compute_for(dcp.Range(1, 5, group=2), "def work(xs):\n    return sum(xs)\n")
    assert grouped.local_exec().values() == [3, 7, 5]
    streamed = dcp.compute_for((n for n in range(4)), "def work(x):\n    return -x\n")
    assert streamed.local_exec().values() == [0, -1, -2, -3]


def writes_to_file_descriptor_one(x):
    import os

    os.write(1, b"not a message\n")  # below print(): the worker's message channel is elsewhere
    print("a console line")
    return x


def test_output_of_a_work_function_never_garbles_the_worker_messages():
    job = dcp.compute_for([1, 2], writes_to_file_descriptor_one)
    seen = record(job, "console")
    assert job.local_exec().values() == [1, 2]
    assert {event["message"] for event in seen["console"]} == {"a console line"}


def fails_on_two(x):
    return 1 / (x - 2)


def test_a_python_slice_that_raises_twice_fails_the_job_with_its_traceback():
    job = dcp.compute_for(1, 3, fails_on_two)
    seen = record(job, "error", "cancel")
    with pytest.raises(dcp.DCPError) as caught:
        job.local_exec(progress_bar=False)
    error = caught.value
    assert error.code == "ETOOMANYERRORS"
    assert error.slice_number == 2
    assert 'File "<work function>", line 2, in fails_on_two' in error.traceback
    assert "return 1 / (x - 2)" in error.traceback
    assert "dcp/runtime" not in error.traceback and "slice.py" not in error.traceback
    assert "ZeroDivisionError: division by zero" in str(error)
    assert [event["slice_number"] for event in seen["error"]] == [2, 2], seen["error"]
    assert seen["error"][0]["name"] == "ZeroDivisionError"
    assert seen["cancel"][0]["code"] == "ETOOMANYERRORS"


def fails_first_time(x, marker_folder):
    import pathlib

    marker = pathlib.Path(marker_folder) / f"tried-{x}"
    if x == 2 and not marker.exists():
        marker.write_text("once")
        raise RuntimeError("flaky")
    return x


def test_a_slice_that_fails_once_is_retried(tmp_path):
    job = dcp.compute_for(1, 3, fails_first_time, args=[str(tmp_path)])
    seen = record(job, "error")
    assert job.local_exec().values() == [1, 2, 3]
    assert [(e["slice_number"], e["message"]) for e in seen["error"]] == [(2, "flaky")]


def bad_progress(x):
    import contextlib

    with contextlib.suppress(ValueError):  # caught, yet the slice fails, as in the browser
        progress(1.5)  # noqa: F821
    return x


def test_progress_out_of_range_fails_the_slice():
    with pytest.raises(dcp.DCPError, match="progress must be between 0 and 1") as caught:
        dcp.compute_for([1], bad_progress).local_exec()
    assert caught.value.code == "ETOOMANYERRORS"


def stalls_on_two(x):
    while x == 2:
        pass
    return x


def test_a_python_slice_without_progress_is_stopped_twice_then_enoprogress():
    job = dcp.compute_for(1, 3, stalls_on_two, progress_timeout=0.3)
    seen = record(job, "noprogress", "result")
    with pytest.raises(dcp.DCPError, match=re.escape("no progress for 0.3 s twice")) as caught:
        job.local_exec(cores=2)
    assert caught.value.code == "ENOPROGRESS"
    assert caught.value.slice_number == 2
    assert seen["noprogress"] == [{"slice": 2, "slice_number": 2, "seconds": 0.3}] * 2
    assert sorted(event["slice"] for event in seen["result"]) == [1, 3]


def test_cores_must_be_a_positive_whole_number():
    with pytest.raises(dcp.DCPError, match="cores"):
        dcp.compute_for([1], fails_on_two).local_exec(cores=0)


JS_SQUARE = """async function (x, offset) {
  progress(0.5);
  console.log("js", x);
  console.warn("careful");
  return x * x + offset;
}"""


@needs_node
def test_javascript_slices_run_in_node_with_console_and_progress():
    job = dcp.compute_for([1, 2, 3], JS_SQUARE, args=[1], language="js")
    seen = record(job, "console", "result")
    assert job.local_exec(cores=2).values() == [2, 5, 10]
    lines = sorted((e["level"], e["message"]) for e in seen["console"])
    assert ("log", "js 2") in lines
    assert ("error", "careful") in lines
    assert len(seen["result"]) == 3


@needs_node
def test_a_javascript_error_and_a_stall_behave_as_on_the_network():
    failing = dcp.compute_for(
        [1, 2], "function (x) { if (x === 2) throw new TypeError('no'); return x }", language="js"
    )
    with pytest.raises(dcp.DCPError, match="TypeError: no") as caught:
        failing.local_exec()
    assert caught.value.code == "ETOOMANYERRORS"
    assert "<work function>" in caught.value.traceback
    stalling = dcp.compute_for(
        [1], "function (x) { for (;;) {} }", language="js", progress_timeout=0.3
    )
    with pytest.raises(dcp.DCPError) as caught:
        stalling.local_exec()
    assert caught.value.code == "ENOPROGRESS"
    bad = dcp.compute_for([1], "function (x) { progress(2); return x }", language="js")
    with pytest.raises(dcp.DCPError, match="RangeError: progress must be between 0 and 1"):
        bad.local_exec()


def test_a_javascript_job_without_node_says_what_it_needs(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    job = dcp.compute_for([1], "function (x) { return x }", language="js")
    with pytest.raises(dcp.DCPError, match="needs node on PATH") as caught:
        job.local_exec()
    assert caught.value.code == "ENONODE"


# A plain script, the way the README shows it: no `if __name__ == "__main__":` guard. Local
# workers must start without running it again (it would deploy the job again, in each worker).
GUARDLESS_SCRIPTS = {
    "source string": """
        import dcp

        print("the script ran")
        job = dcp.compute_for([1, 2, 3], "def work(x):\\n    return x * 2\\n")
        print(job.local_exec(progress_bar=False).values())
    """,
    "function object": """
        import dcp

        print("the script ran")

        def work(x):
            from dcp import progress

            progress(0.5)
            return x * 2

        job = dcp.compute_for(1, 3, work)
        print(job.local_exec(cores=2, progress_bar=False).values())
    """,
}


@pytest.mark.parametrize("script", GUARDLESS_SCRIPTS.values(), ids=GUARDLESS_SCRIPTS.keys())
def test_local_exec_runs_from_a_script_without_a_main_guard(tmp_path, script):
    path = tmp_path / "squares.py"
    path.write_text(textwrap.dedent(script))

    done = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["the script ran", "[2, 4, 6]"]
