"""The scheduler loses nothing and pays nothing twice when workers or the server die."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testkit.livesite import REPO, LiveSite
from testkit.synthetic_worker import log_in

PASSWORD = "fault test password 42"
OFFER_UNITS = 1_000_000  # 0.001 credit
# Slices leased when the server dies stay leased until their lease lapses after the restart:
# short leases (and a short progress timeout, which a lease outlives by 30 s) keep that wait
# to half a minute.
SHORT_LEASES = {"SLICE_LEASE_SECONDS": "5"}
SHORT_PROGRESS_TIMEOUT_S = 1


def client_program(slices: int, progress_timeout: int = 60) -> str:
    return f"""
import json, dcp

def work(x):
    return x * 2

job = dcp.compute_for(1, {slices}, work)
job.progress_timeout = {progress_timeout}
events = []
job.on("result", lambda event: events.append(event["slice"]))
values = job.exec(slice_payment_offer="0.001").values()
print(json.dumps({{"job": job.id, "ok": values == [x * 2 for x in range(1, {slices} + 1)],
                  "events": len(events), "distinct": len(set(events))}}))
"""


@pytest.fixture
def site(tmp_path: Path):
    live = LiveSite(tmp_path, extra_env=SHORT_LEASES)
    live.migrate()
    home = tmp_path / "home"
    live.seed(home, PASSWORD)
    live.start()
    live.home = home  # type: ignore[attr-defined]
    yield live
    live.stop()


def start_worker(site: LiveSite, delay: float) -> subprocess.Popen[bytes]:
    """One synthetic worker process, in the volunteer's signed-in session (like a tab)."""
    if not hasattr(site, "session"):
        site.session = log_in(site.url, "worker@example.com", PASSWORD)  # type: ignore[attr-defined]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testkit.synthetic_worker",
            "--url",
            site.url,
            "--session",
            site.session,
            "--delay",
            str(delay),
        ],  # type: ignore[attr-defined]
        cwd=REPO,
    )


def start_client(site: LiveSite, slices: int, progress_timeout: int = 60) -> subprocess.Popen[str]:
    env = {**os.environ, "DCP_HOMEDIR": str(site.home), "DCP_SCHEDULER_URL": site.url}  # type: ignore[attr-defined]
    env.pop("DATABASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-c", client_program(slices, progress_timeout)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def computed(site: LiveSite) -> int:
    rows = site.query("SELECT COALESCE(SUM(computed), 0) FROM scheduler_job")
    return int(rows[0][0])


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def finish(client: subprocess.Popen[str], seconds: float = 180) -> dict:
    stdout, stderr = client.communicate(timeout=seconds)
    assert client.returncode == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1])


def assert_ledger_whole(site: LiveSite, job_id: str, slices: int) -> None:
    worker = site.query(
        "SELECT w.address FROM wallet_key w JOIN users_user u ON u.id = w.user_id "
        "WHERE u.email = 'worker@example.com' AND w.is_default"
    )[0][0]
    grant = 10 * 10**9  # the worker joined First Devs too
    assert site.ledger_balance(worker) == grant + slices * OFFER_UNITS  # each slice paid once
    assert site.ledger_balance(f"escrow:{job_id}") == 0
    supply = -site.query("SELECT balance FROM bank_ledgeraccount WHERE kind = 'mint'")[0][0]
    held = site.query("SELECT SUM(balance) FROM bank_ledgeraccount WHERE kind != 'mint'")[0][0]
    assert supply == held  # credits neither appeared nor vanished
    unbalanced = site.query("SELECT txn_id FROM bank_entry GROUP BY txn_id HAVING SUM(amount) != 0")
    assert unbalanced == []
    rows = site.query(
        "SELECT COUNT(*), COUNT(DISTINCT number) FROM scheduler_slice "
        "WHERE job_id = ? AND status = 'done'",
        (job_id,),
    )
    assert rows == [(slices, slices)]


def test_killing_three_of_eight_workers_mid_job_loses_nothing(site: LiveSite) -> None:
    workers = [start_worker(site, delay=0.002) for _ in range(8)]
    try:
        client = start_client(site, 10_000)
        wait_until(lambda: computed(site) >= 2_000, 120, "2,000 slices computed")
        for victim in workers[:3]:
            victim.send_signal(signal.SIGKILL)
        outcome = finish(client)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    assert outcome["ok"]
    assert outcome["events"] == outcome["distinct"] == 10_000
    assert_ledger_whole(site, outcome["job"], 10_000)


def test_a_server_killed_mid_job_restarts_and_everyone_reconnects(site: LiveSite) -> None:
    workers = [start_worker(site, delay=0.004) for _ in range(2)]
    try:
        client = start_client(site, 3_000, SHORT_PROGRESS_TIMEOUT_S)
        wait_until(lambda: computed(site) >= 500, 120, "500 slices computed")
        site.stop(kill=True)
        time.sleep(1)
        site.start()
        outcome = finish(client)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    assert outcome["ok"]
    assert outcome["distinct"] == 3_000
    assert_ledger_whole(site, outcome["job"], 3_000)


BIG_VALUES_PROGRAM = """
import json, dcp

def work(x):
    return x[::-1]

values = [str(n) * 1_300_000 for n in range(1, 6)]  # five values of 1.3 MB: 6.5 MB in all
job = dcp.compute_for(values, work)
results = job.exec(slice_payment_offer="0.001").values()
print(json.dumps({"job": job.id, "ok": results == [v[::-1] for v in values]}))
"""


def test_values_and_results_of_megabytes_travel_whole(site: LiveSite) -> None:
    """More than one frame's worth of inputs and results: the client deploys them in batches,
    tasks carry what fits, results come back in pages, over the real server's sockets."""
    worker = start_worker(site, delay=0)
    try:
        env = {**os.environ, "DCP_HOMEDIR": str(site.home), "DCP_SCHEDULER_URL": site.url}  # type: ignore[attr-defined]
        env.pop("DATABASE_URL", None)
        client = subprocess.Popen(
            [sys.executable, "-c", BIG_VALUES_PROGRAM],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        outcome = finish(client)
        assert outcome["ok"]
        shown = subprocess.run(
            [sys.executable, "-m", "dcp.cli", "results", outcome["job"]],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert shown.returncode == 0, shown.stderr
        printed = json.loads(shown.stdout)
        assert len(json.dumps(printed)) > 6_000_000  # all five, in more than one page
    finally:
        worker.kill()
        worker.wait()
    assert_ledger_whole(site, outcome["job"], 5)
