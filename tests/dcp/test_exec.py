"""job.exec() against a fake scheduler: results, callbacks, cancellation, refusals, reconnects."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

import dcp
from dcp.client import connection, events
from dcp.client import execution as execution_module
from dcp.keys import default_keystore_path
from dcp.keys.keystore import create_keystore, save_keystore_file

from .conftest import ACCOUNT, ACCOUNT_KEY, IDENTITY, IDENTITY_KEY
from .fake_scheduler import FakeJob, FakeScheduler, drop, event

pytestmark: list[pytest.MarkDecorator] = []

KEYS: dict[str, Any] = {"identity": "0x" + IDENTITY_KEY.hex(), "account": ACCOUNT_KEY}
TRACEBACK = (
    'Traceback (most recent call last):\n  File "<work function>", line 2, in work\n'
    "ZeroDivisionError: division by zero\n"
)


def work(x):
    return x * 2


def record(job: dcp.Job) -> dict[str, list[Any]]:
    """Every callback call, by event name."""
    calls: dict[str, list[Any]] = {name: [] for name in events.EVENTS}
    for name, seen in calls.items():
        job.on(name, seen.append)
    return calls


def start(fake: FakeScheduler) -> FakeScheduler:
    fake.start()
    dcp.init(fake.url)
    return fake


@pytest.fixture
def fast_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "RECONNECT_FIRST_DELAY_S", 0.05)
    monkeypatch.setattr(connection, "RECONNECT_GIVE_UP_S", 5.0)


def test_exec_returns_results_in_slice_order_and_fires_callbacks(scheduler):
    job = dcp.compute_for(1, 10, work)
    calls = record(job)
    results = job.exec(slice_payment_offer="0.001", **KEYS)

    assert list(results) == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert results.keys() == list(range(1, 11))
    assert results.key(3) == 3
    assert job.id == "job-1"
    assert calls["accepted"] == [{"job": "job-1", "total": 10}]
    assert sorted(call["slice"] for call in calls["result"]) == list(range(1, 11))
    assert {"slice": 4, "value": 8} in calls["result"]
    hello = {"slice": 1, "slice_number": 1, "level": "log", "message": "hello", "count": 1}
    assert calls["console"] == [hello]
    assert calls["status"][-1]["status"] == "finished"
    assert calls["complete"] == [{"total": 10}]
    assert calls["error"] == calls["cancel"] == calls["noprogress"] == []
    assert calls["readystatechange"] == ["exec", "init", "deploying", "deployed", "complete"]

    hello, deploy = scheduler.requests("hello")[0], scheduler.requests("deploy")[0]
    assert hello["identity"] == IDENTITY
    assert deploy["payment"]["account"] == ACCOUNT
    assert deploy["payment"]["max_total"] == "0.01"
    assert deploy["input"] == {"kind": "range", "start": 1, "end": 10, "step": 1}
    assert deploy["progress_timeout"] == 60
    assert "open" not in deploy and "requirements" not in deploy


def test_exec_uses_the_keystores_of_the_dcp_home(scheduler):
    for role, key in (("identity", IDENTITY_KEY), ("account", ACCOUNT_KEY)):
        path = default_keystore_path(role)  # type: ignore[arg-type]
        path.parent.mkdir(parents=True, exist_ok=True)
        save_keystore_file(path, create_keystore(key, "", scrypt_n=2**4))
    job = dcp.compute_for(["a", "b"], work)
    job.public = {"name": "doubling"}
    assert job.exec(0.5).values() == ["aa", "bb"]
    deploy = scheduler.requests("deploy")[0]
    assert scheduler.requests("hello")[0]["identity"] == IDENTITY
    assert deploy["payment"]["account"] == ACCOUNT
    assert deploy["public"] == {"name": "doubling"}


def test_exec_again_redeploys_the_same_job_and_catches_up(scheduler):
    job = dcp.compute_for(1, 4, work)
    first = job.exec(**KEYS)
    assert job.exec(**KEYS).values() == first.values() == [2, 4, 6, 8]
    deploys = scheduler.requests("deploy")
    assert deploys[0]["ref"] == deploys[1]["ref"]
    assert len(scheduler.jobs) == 1
    assert len(scheduler.requests("subscribe")) == 1


def test_results_that_all_came_with_events_are_not_fetched_again(scheduler):
    results = dcp.compute_for(1, 12, work).exec(**KEYS)
    assert results.values() == [x * 2 for x in range(1, 13)]
    assert scheduler.requests("results") == []


def test_events_that_come_before_accepted_are_kept_for_the_job(scheduler):
    """A fast worker's results may reach the client before the deploy's reply names the job."""
    scheduler.events_before_accepted = True
    job = dcp.compute_for(1, 12, work)
    seen = []
    job.on("result", lambda event: seen.append(event["slice"]))
    results = job.exec(**KEYS)
    assert results.values() == [x * 2 for x in range(1, 13)]
    assert sorted(seen) == list(range(1, 13))
    # Nothing was waited for or fetched again: the events were enough.
    assert scheduler.requests("results") == [] and scheduler.requests("status") == []


def test_results_lost_with_their_events_are_fetched_in_pages_of_ten_thousand(scheduler):
    scheduler.drop_result_events = True
    results = dcp.compute_for(1, 25_000, work).exec(**KEYS)
    assert len(results) == 25_000
    assert results[-1] == 50_000
    pages = [(r["start"], r["end"]) for r in scheduler.requests("results")]
    assert pages == [(1, 10_000), (10_001, 20_000), (20_001, 25_000)]


class FailingScheduler(FakeScheduler):
    """A slice fails twice: an error event, then the job is cancelled."""

    async def play(self, ws, job: FakeJob, connection: int, redeploy: bool) -> None:
        error = {"slice": 3, "name": "ZeroDivisionError", "message": "division by zero"}
        await event(ws, job, "error", {**error, "traceback": TRACEBACK})
        await event(ws, job, "cancel", {"code": "ETOOMANYERRORS", "reason": "slice 3 failed"})


def test_a_slice_error_that_cancels_the_job_raises_with_its_traceback():
    fake = start(FailingScheduler())
    try:
        job = dcp.compute_for(1, 5, work)
        calls = record(job)
        with pytest.raises(dcp.DCPError) as caught:
            job.exec(**KEYS)
    finally:
        fake.stop()
    error = caught.value
    assert error.code == "ETOOMANYERRORS"
    assert error.slice_number == 3
    assert error.traceback == TRACEBACK
    assert "ZeroDivisionError: division by zero" in str(error)
    assert str(error).startswith("ETOOMANYERRORS: slice 3 failed: ZeroDivisionError")
    assert calls["error"][0]["slice"] == 3
    assert calls["cancel"] == [{"code": "ETOOMANYERRORS", "reason": "slice 3 failed"}]


class CancelledScheduler(FakeScheduler):
    async def play(self, ws, job: FakeJob, connection: int, redeploy: bool) -> None:
        await event(ws, job, "cancel", {"code": "ECANCELLED", "reason": "cancelled by its owner"})


def test_a_cancelled_job_raises_ecancelled():
    fake = start(CancelledScheduler())
    try:
        with pytest.raises(dcp.DCPError, match="ECANCELLED: cancelled by its owner") as caught:
            dcp.compute_for(1, 5, work).exec(**KEYS)
    finally:
        fake.stop()
    assert caught.value.traceback is None


def test_a_refused_deploy_raises_the_schedulers_code(scheduler):
    scheduler.deploy_error = ("ENOFUNDS", "account 0xDEF holds too few credits")
    with pytest.raises(dcp.DCPError) as caught:
        dcp.compute_for(1, 5, work).exec(**KEYS)
    assert caught.value.code == "ENOFUNDS"
    assert caught.value.message == "account 0xDEF holds too few credits"
    assert len(scheduler.requests("deploy")) == 1  # a refusal is final: no retry


def test_an_unknown_identity_raises_enoidentity(scheduler):
    message = "identity not registered: create one on the First Devs tab"
    scheduler.hello_error = ("ENOIDENTITY", message)
    with pytest.raises(dcp.DCPError, match=message) as caught:
        dcp.compute_for(1, 5, work).exec(**KEYS)
    assert caught.value.code == "ENOIDENTITY"


class DroppingScheduler(FakeScheduler):
    """The first connection drops after one result; the job then runs to the end."""

    async def play(self, ws, job: FakeJob, connection: int, redeploy: bool) -> None:
        if connection == 1:
            await event(ws, job, "result", [{"slice": 1, "value": job.results[1]}])
            await drop(ws)
        else:
            await super().play(ws, job, connection, redeploy)


def test_a_dropped_connection_is_resumed_with_the_same_ref(fast_reconnects):
    fake = start(DroppingScheduler())
    try:
        job = dcp.compute_for(1, 7, work)
        calls = record(job)
        results = job.exec(**KEYS)
    finally:
        fake.stop()
    assert results.values() == [2, 4, 6, 8, 10, 12, 14]
    deploys = fake.requests("deploy")
    assert len(deploys) == 2
    assert deploys[0]["ref"] == deploys[1]["ref"] == job.ref
    assert deploys[0]["payment"] == deploys[1]["payment"]
    kinds = [frame["type"] for frame in fake.frames]
    assert kinds == ["hello", "deploy", "hello", "deploy", "subscribe"]  # results came as events
    assert len(calls["accepted"]) == 1
    assert sorted(call["slice"] for call in calls["result"]) == list(range(1, 8))


class FinishedWhileAwayScheduler(FakeScheduler):
    """The connection drops; by the time the client is back, the job is finished."""

    async def play(self, ws, job: FakeJob, connection: int, redeploy: bool) -> None:
        if connection == 1:
            job.status = "finished"
            await drop(ws)


def test_a_job_that_finished_while_disconnected_returns_its_results(fast_reconnects):
    fake = start(FinishedWhileAwayScheduler())
    try:
        job = dcp.compute_for([5, 6], work)
        calls = record(job)
        assert job.exec(**KEYS).values() == [10, 12]
    finally:
        fake.stop()
    assert calls["complete"] == [{"total": 2}]
    assert [call["slice"] for call in calls["result"]] == [1, 2]


class SilentScheduler(FakeScheduler):
    """Finishes the job but never sends an event: only polling finds out."""

    async def play(self, ws, job: FakeJob, connection: int, redeploy: bool) -> None:
        job.status = "finished"


def test_a_lost_complete_event_is_found_by_polling_the_status(monkeypatch):
    monkeypatch.setattr(execution_module, "POLL_INTERVAL_S", 0.2)
    fake = start(SilentScheduler())
    try:
        assert dcp.compute_for(1, 3, work).exec(**KEYS).values() == [2, 4, 6]
    finally:
        fake.stop()
    assert len(fake.requests("subscribe")) == 1


def test_an_unreachable_scheduler_gives_up_with_enoconnection(monkeypatch):
    monkeypatch.setattr(connection, "RECONNECT_GIVE_UP_S", 1.0)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    dcp.init(f"http://127.0.0.1:{port}")
    began = time.monotonic()
    with pytest.raises(dcp.DCPError, match="cannot reach the scheduler") as caught:
        dcp.compute_for(1, 3, work).exec(**KEYS)
    assert caught.value.code == "ENOCONNECTION"
    assert time.monotonic() - began < 5


class CancelledWhileAwayScheduler(FakeScheduler):
    """The job is cancelled while the client is away; subscribe then reports it, as the portal
    does: the `subscribed` status, followed by the job's closing `cancel` event."""

    async def play(self, ws, job: FakeJob, connection: int, redeploy: bool) -> None:
        if connection == 1:
            job.status = "cancelled"
            await drop(ws)

    async def on_request(self, ws, frame, connection: int) -> None:
        await super().on_request(ws, frame, connection)
        if frame["type"] == "subscribe":
            job = self.job_by_id(frame["job"])
            await event(ws, job, "cancel", {"code": "ETOOMANYERRORS", "reason": "slice 2 failed"})


def test_a_job_cancelled_while_disconnected_raises_its_cancel_code(fast_reconnects):
    fake = start(CancelledWhileAwayScheduler())
    try:
        with pytest.raises(dcp.DCPError, match="slice 2 failed") as caught:
            dcp.compute_for(1, 3, work).exec(**KEYS)
    finally:
        fake.stop()
    assert caught.value.code == "ETOOMANYERRORS"


def test_public_must_be_text():
    job = dcp.compute_for(1, 3, work)
    with pytest.raises(dcp.DCPError, match="dict of strings"):
        job.public = {"name": 5}  # type: ignore[dict-item]
