"""Generators streamed in batches, and open jobs fed with add_slices until close."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import dcp
from dcp.client import connection, remote

from .conftest import ACCOUNT, KEYS
from .fake_scheduler import FakeScheduler, batch_text, drop, recover

pytestmark: list[pytest.MarkDecorator] = []


def work(x):
    return x * 2


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "BATCH_VALUES", 4)


def states(job: dcp.Job) -> list[str]:
    seen: list[str] = []
    job.on("readystatechange", seen.append)
    return seen


def test_a_generator_is_streamed_in_batches_each_paid_by_its_own_cheque(scheduler, small_batches):
    read: list[int] = []
    read_when_batch_arrived: list[int] = []

    def numbers():
        for n in range(10):
            read.append(n)
            yield n

    original = scheduler.on_add_slices

    async def watch(ws, job, frame):
        read_when_batch_arrived.append(len(read))
        await original(ws, job, frame)

    scheduler.on_add_slices = watch
    job = dcp.compute_for(numbers(), work)
    seen = states(job)
    results = job.exec("0.5", **KEYS)

    assert results.values() == [2 * n for n in range(10)]
    assert results.key(7) == 6
    assert seen == ["exec", "init", "deploying", "uploading", "deployed", "closed", "complete"]
    deploy = scheduler.requests("deploy")[0]
    assert deploy["open"] is True
    assert deploy["input"] == {"kind": "values", "values": [0, 1, 2, 3]}
    assert deploy["payment"]["max_total"] == "2"
    batches = scheduler.requests("add_slices")
    assert [frame["values"] for frame in batches] == [[4, 5, 6, 7], [8, 9]]
    assert len({frame["ref"] for frame in batches}) == 2
    for frame in batches:
        payment = frame["payment"]
        assert payment["max_total"] == str(0.5 * len(frame["values"])).removesuffix(".0")
        text = batch_text(job.id, frame["ref"], payment["max_total"])
        assert recover(text, payment["signature"]) == ACCOUNT
    assert len(scheduler.requests("close")) == 1
    # Memory stays flat: the generator is read about one batch ahead of what was sent.
    assert read_when_batch_arrived == [8, 10]


def test_a_short_generator_is_one_closed_deploy(scheduler):
    job = dcp.compute_for((n for n in (5, 6)), work)
    seen = states(job)
    assert job.exec(**KEYS).values() == [10, 12]
    deploy = scheduler.requests("deploy")[0]
    assert "open" not in deploy
    assert deploy["input"] == {"kind": "values", "values": [5, 6]}
    assert scheduler.requests("add_slices") == scheduler.requests("close") == []
    assert "uploading" not in seen and "closed" not in seen


class DropOnFirstBatch(FakeScheduler):
    async def on_request(self, ws, frame, connection: int) -> None:
        if frame["type"] == "add_slices" and connection == 1:
            await drop(ws)
            return
        await super().on_request(ws, frame, connection)


def test_a_batch_lost_to_a_dropped_connection_is_resent_with_its_ref(small_batches, monkeypatch):
    monkeypatch.setattr(connection, "RECONNECT_FIRST_DELAY_S", 0.05)
    fake = DropOnFirstBatch()
    fake.start()
    dcp.init(fake.url)
    try:
        results = dcp.compute_for(iter(range(6)), work).exec(**KEYS)
    finally:
        fake.stop()
    assert results.values() == [0, 2, 4, 6, 8, 10]
    batches = fake.requests("add_slices")
    assert batches[0]["ref"] == batches[1]["ref"]
    assert batches[0]["payment"] == batches[1]["payment"]
    assert len(fake.requests("deploy")) == 2


def run_in_thread(job: dcp.Job) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["results"] = job.exec(**KEYS)
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_an_open_job_takes_add_slices_from_another_thread_until_close(scheduler):
    job = dcp.compute_for([1, 2], work, auto_close=False)
    accepted = threading.Event()
    job.on("accepted", lambda _: accepted.set())
    seen_results: list[int] = []
    job.on("result", lambda event: seen_results.append(event["slice"]))
    thread, outcome = run_in_thread(job)
    assert accepted.wait(10)

    assert job.add_slices([3, 4]) == 4
    assert job.add_slices(n for n in (5,)) == 5
    assert job.close() == 5
    thread.join(10)

    results = outcome["results"]
    assert results.values() == [2, 4, 6, 8, 10]
    assert results.key(4) == 4
    assert results.lookup_value(5) == 10
    assert sorted(seen_results) == [1, 2, 3, 4, 5]
    deploy = scheduler.requests("deploy")[0]
    assert deploy["open"] is True
    assert deploy["input"]["values"] == [1, 2]
    assert len(scheduler.requests("add_slices")) == 2


def test_add_slices_and_close_before_exec_are_sent_after_the_deploy(scheduler):
    job = dcp.compute_for([], work, auto_close=False)
    assert job.add_slices([7, 8]) == 2
    job.close()
    assert job.exec(**KEYS).values() == [14, 16]
    assert scheduler.requests("deploy")[0]["input"] == {"kind": "values", "values": []}
    assert [f["values"] for f in scheduler.requests("add_slices")] == [[7, 8]]
    kinds = [frame["type"] for frame in scheduler.frames]
    assert kinds == ["hello", "deploy", "add_slices", "close"]  # results came as events


def test_adding_to_a_closed_job_raises_eclosed(scheduler):
    job = dcp.compute_for([1], work, auto_close=False)
    job.close()
    job.exec(**KEYS)
    job.auto_close = False  # pretend we did not know
    with pytest.raises(dcp.DCPError) as caught:
        job.add_slices([2])
    assert caught.value.code == "ECLOSED"


def test_add_slices_needs_an_open_job():
    with pytest.raises(dcp.DCPError, match="auto_close=False"):
        dcp.compute_for([1], work).add_slices([2])


def test_an_open_job_takes_values_not_a_range(scheduler):
    with pytest.raises(dcp.DCPError, match="takes values, not a range") as caught:
        dcp.compute_for(1, 5, work, auto_close=False).exec(**KEYS)
    assert caught.value.code == "EINVALID"
    assert scheduler.requests("deploy") == []


def test_an_empty_list_is_only_an_input_for_an_open_job():
    with pytest.raises(dcp.DCPError, match="empty"):
        dcp.compute_for([], work)
    assert dcp.compute_for([], work, auto_close=False).total == 0
