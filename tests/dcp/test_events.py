"""Events as callbacks see them: console collapsing, errors, noprogress and cancellation."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import dcp
from dcp.client.events import ConsoleCollapser

from .conftest import KEYS
from .fake_scheduler import FakeJob, FakeScheduler, event

pytestmark: list[pytest.MarkDecorator] = []


def work(x):
    return x * 2


def collect(job: dcp.Job, name: str) -> list[Any]:
    seen: list[Any] = []
    job.on(name, seen.append)
    return seen


def start(fake: FakeScheduler) -> FakeScheduler:
    fake.start()
    dcp.init(fake.url)
    return fake


def test_identical_console_lines_are_collapsed_with_a_count():
    seen: list[tuple[str, Any]] = []
    console = ConsoleCollapser(lambda name, data: seen.append(data))
    for slice_number, message in enumerate(["a", "a", "a", "b", "a", "a"], 1):
        console.add("log", message, slice_number)
    console.add("error", "a", 7)
    console.flush()
    console.flush()  # nothing more to tell
    counted = [
        (data["level"], data["message"], data["slice_number"], data["count"]) for data in seen
    ]
    assert counted == [
        ("log", "a", 1, 1),
        ("log", "a", 3, 2),  # two repeats were swallowed, the last from slice 3
        ("log", "b", 4, 1),
        ("log", "a", 5, 1),
        ("log", "a", 6, 1),
        ("error", "a", 7, 1),
    ]


class ChattyScheduler(FakeScheduler):
    """Console lines, an error that is retried, a noprogress that is requeued, then the end."""

    async def play(self, ws, job: FakeJob, connection: int, redeploy: bool) -> None:
        for slice_number in (1, 2, 3):
            await event(
                ws, job, "console", {"slice": slice_number, "level": "log", "message": "tick"}
            )
        failure = {"slice": 2, "name": "ValueError", "message": "bad", "traceback": "tb"}
        await event(ws, job, "error", failure)
        await event(ws, job, "noprogress", {"slice": 3, "seconds": 60})
        await super().play(ws, job, connection, redeploy)


def test_console_error_and_noprogress_events_reach_callbacks():
    fake = start(ChattyScheduler())
    try:
        job = dcp.compute_for(1, 3, work)
        console, errors, stalls = (
            collect(job, name) for name in ("console", "error", "noprogress")
        )
        job.exec(**KEYS)
    finally:
        fake.stop()
    assert [(c["message"], c["count"], c["slice_number"]) for c in console] == [
        ("tick", 1, 1),
        ("tick", 2, 3),
        ("hello", 1, 1),
    ]
    assert errors == [
        {"slice": 2, "slice_number": 2, "name": "ValueError", "message": "bad", "traceback": "tb"}
    ]
    assert stalls == [{"slice": 3, "slice_number": 3, "seconds": 60}]


class StallingScheduler(FakeScheduler):
    async def play(self, ws, job: FakeJob, connection: int, redeploy: bool) -> None:
        for _ in range(2):
            await event(ws, job, "noprogress", {"slice": 4, "seconds": 60})
        reason = "slice 4 made no progress for 60 s twice"
        await event(ws, job, "cancel", {"code": "ENOPROGRESS", "reason": reason})


def test_a_slice_stopped_twice_for_no_progress_raises_enoprogress():
    fake = start(StallingScheduler())
    try:
        job = dcp.compute_for(1, 5, work)
        seen = collect(job, "readystatechange")
        with pytest.raises(dcp.DCPError, match="no progress for 60 s twice") as caught:
            job.exec(**KEYS)
    finally:
        fake.stop()
    assert caught.value.code == "ENOPROGRESS"
    assert caught.value.slice_number == 4
    assert seen[-1] == "cancelled"


class SlowScheduler(FakeScheduler):
    """Accepts the job and computes nothing: only a cancel ends it."""

    async def play(self, ws, job: FakeJob, connection: int, redeploy: bool) -> None:
        await event(ws, job, "status", job.status_frame(computed=0))


def test_job_cancel_from_another_thread_makes_exec_raise_ecancelled():
    fake = start(SlowScheduler())
    try:
        job = dcp.compute_for(1, 5, work)
        cancels = collect(job, "cancel")
        job.on("accepted", lambda _: threading.Thread(target=job.cancel, args=("enough",)).start())
        with pytest.raises(dcp.DCPError, match="ECANCELLED: enough") as caught:
            job.exec(**KEYS)
    finally:
        fake.stop()
    assert caught.value.code == "ECANCELLED"
    assert cancels == [{"code": "ECANCELLED", "reason": "enough"}]
    assert fake.requests("cancel")[0]["reason"] == "enough"


def test_cancel_before_deploy_is_sent_right_after_it():
    fake = start(SlowScheduler())
    try:
        job = dcp.compute_for(1, 5, work)
        job.on("readystatechange", lambda state: state == "deploying" and job.cancel("early"))
        with pytest.raises(dcp.DCPError, match="early") as caught:
            job.exec(**KEYS)
    finally:
        fake.stop()
    assert caught.value.code == "ECANCELLED"
    kinds = [frame["type"] for frame in fake.frames]
    assert kinds == ["hello", "deploy", "cancel"]


def test_cancelling_a_job_never_deployed_is_an_error():
    with pytest.raises(dcp.DCPError) as caught:
        dcp.compute_for(1, 5, work).cancel()
    assert caught.value.code == "ENOJOB"


def test_an_unknown_event_name_is_refused():
    with pytest.raises(dcp.DCPError, match=r"unknown event 'done'.*readystatechange"):
        dcp.compute_for(1, 5, work).on("done", print)
