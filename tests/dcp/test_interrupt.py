"""Ctrl-C during exec(): the job is cancelled (escrow refunded) unless asked to keep running."""

from __future__ import annotations

import _thread
import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import dcp

from .fake_scheduler import FakeJob, PendingScheduler

pytestmark: list[pytest.MarkDecorator] = []

REPO = Path(__file__).resolve().parents[2]


def work(x):
    return x * 2


def interrupt_once_accepted(job: dcp.Job) -> None:
    """Press Ctrl-C (in the main thread) as soon as the scheduler has accepted the job."""
    accepted = threading.Event()
    job.on("accepted", lambda _: accepted.set())

    def press() -> None:
        if accepted.wait(10):
            time.sleep(0.2)  # exec() is waiting for events now
            _thread.interrupt_main()

    threading.Thread(target=press, daemon=True).start()


def test_ctrl_c_during_exec_cancels_the_job_and_says_so(pending, capsys):
    job = dcp.compute_for([1, 2, 3], work)
    interrupt_once_accepted(job)
    with pytest.raises(KeyboardInterrupt):
        job.exec(progress_bar=False)
    cancels = pending.requests("cancel")
    assert [frame["job"] for frame in cancels] == [job.id]
    assert "Ctrl-C" in cancels[0]["reason"]
    assert job.state == "cancelled"
    deadline = time.monotonic() + 5  # the fake ends the job just after its reply
    while pending.job_by_id(job.id).status != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pending.job_by_id(job.id).status == "cancelled"
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == f"dcp: job {job.id} cancelled (Ctrl-C); its escrow is refunded"


class SlowToAccept(PendingScheduler):
    """The first deploy makes its job at once but is answered only much later."""

    def __init__(self) -> None:
        super().__init__()
        self.deploy_received = threading.Event()

    async def on_deploy(self, ws, frame, connection: int) -> None:
        if not self.deploy_received.is_set():
            job_id = f"job-{len(self.jobs) + 1}"
            self.jobs[frame["ref"]] = FakeJob(job_id, frame, self.evaluate)
            self.deploy_received.set()
            await asyncio.sleep(3)  # long after the Ctrl-C below
        await super().on_deploy(ws, frame, connection)


def test_ctrl_c_before_the_deploy_is_answered_still_cancels_the_job(keystores, capsys):
    slow = SlowToAccept()
    slow.start()
    dcp.init(slow.url)
    try:
        job = dcp.compute_for([1, 2, 3], work)

        def press() -> None:
            if slow.deploy_received.wait(10):
                _thread.interrupt_main()

        threading.Thread(target=press, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            job.exec(progress_bar=False)
        assert [frame["job"] for frame in slow.requests("cancel")] == ["job-1"]
        assert job.id == "job-1"
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line == "dcp: job job-1 cancelled (Ctrl-C); its escrow is refunded"
    finally:
        slow.stop()


def test_ctrl_c_with_detach_on_interrupt_leaves_the_job_running(pending, capsys):
    job = dcp.compute_for([1, 2, 3], work)
    interrupt_once_accepted(job)
    with pytest.raises(KeyboardInterrupt):
        job.exec(progress_bar=False, detach_on_interrupt=True)
    assert pending.requests("cancel") == []
    assert pending.job_by_id(job.id).status == "running"
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (
        f"dcp: job {job.id} keeps running; follow it again with dcp.Job.attach({job.id!r}).wait()"
    )


SCRIPT = """
import dcp

def work(x):
    return x * 2

job = dcp.compute_for([1, 2, 3], work)
job.on("accepted", lambda data: print("accepted", data["job"], flush=True))
job.exec(progress_bar=False)
"""


def test_sigint_to_a_script_in_exec_cancels_its_job(pending, tmp_path):
    script = tmp_path / "deploy.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "DCP_SCHEDULER_URL": pending.url, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("accepted "), first + (
            process.stderr.read() if process.stderr else ""
        )
        job_id = first.split()[1]
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode != 0
    assert f"dcp: job {job_id} cancelled (Ctrl-C); its escrow is refunded" in errors
    assert "KeyboardInterrupt" in errors
    assert [frame["job"] for frame in pending.requests("cancel")] == [job_id]
