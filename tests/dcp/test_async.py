"""exec_async, exec() inside a running event loop (Jupyter), and the progress bar."""

from __future__ import annotations

import asyncio
import io
import sys
import threading

import pytest

import dcp
from dcp.client import events

from .conftest import KEYS
from .fake_scheduler import PendingScheduler

pytestmark: list[pytest.MarkDecorator] = []


def work(x):
    return x * 2


def test_exec_async_runs_callbacks_in_the_event_loop(scheduler):
    async def main() -> tuple[list[int], set[int], int]:
        job = dcp.compute_for(1, 5, work)
        threads: set[int] = set()
        job.on("result", lambda _: threads.add(threading.get_ident()))
        results = await job.exec_async(**KEYS)
        return results.values(), threads, threading.get_ident()

    values, threads, loop_thread = asyncio.run(main())
    assert values == [2, 4, 6, 8, 10]
    assert threads == {loop_thread}


def test_exec_inside_a_running_loop_works_as_in_jupyter(scheduler):
    async def cell() -> list[int]:
        return dcp.compute_for([1, 2], work).exec(**KEYS).values()  # no await, as in a notebook

    assert asyncio.run(cell()) == [2, 4]


def test_an_open_job_is_fed_from_the_same_loop_as_exec_async(scheduler):
    async def main() -> list[int]:
        job = dcp.compute_for([1], work, auto_close=False)
        accepted = asyncio.Event()
        job.on("accepted", lambda _: accepted.set())
        running = asyncio.create_task(job.exec_async(**KEYS))
        await accepted.wait()
        await asyncio.to_thread(job.add_slices, [2, 3])
        await asyncio.to_thread(job.close)
        return (await running).values()

    assert asyncio.run(main()) == [2, 4, 6]


def test_cancelling_exec_async_stops_following_and_leaves_the_job_running():
    fake = PendingScheduler()
    fake.start()
    dcp.init(fake.url)

    async def main(job: dcp.Job) -> None:
        running = asyncio.create_task(job.exec_async(**KEYS))
        await asyncio.sleep(0.3)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    try:
        job = dcp.compute_for(1, 3, work)
        asyncio.run(main(job))
        assert job.id == "job-1"
        assert fake.requests("cancel") == []
    finally:
        fake.stop()


def test_the_progress_bar_counts_computed_slices_into_a_given_file(scheduler):
    bar = io.StringIO()
    dcp.compute_for(1, 6, work).exec(**KEYS, progress_bar=bar)
    drawn = bar.getvalue()
    assert "6/6" in drawn
    assert "slice" in drawn


def test_no_progress_bar_when_turned_off_or_nobody_watches(scheduler, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    dcp.compute_for(1, 3, work).exec(**KEYS, progress_bar=False)
    assert terminal.getvalue() == ""
    dcp.compute_for(1, 3, work).exec(**KEYS)  # a terminal: shown by default
    assert "3/3" in terminal.getvalue()
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal, no notebook
    assert not events.ProgressBar(None, 3, "job").shown
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    shown = events.ProgressBar(None, 3, "job")
    assert shown.shown
    shown.close()
