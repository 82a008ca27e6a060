"""Two daphne processes share PostgreSQL and Redis: workers on both, clients on either."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from testkit.livesite import REPO, LiveSite
from testkit.synthetic_worker import log_in

DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
pytestmark = pytest.mark.skipif(
    not (DATABASE_URL.startswith("postgres") and REDIS_URL.startswith("redis")),
    reason="needs PostgreSQL and Redis: set DATABASE_URL=postgres://... and REDIS_URL=redis://...",
)
PASSWORD = "many processes password 42"


@pytest.fixture
def shared_database():
    """A fresh PostgreSQL database of its own, dropped afterwards."""
    import psycopg

    name = f"dcp_live_{uuid.uuid4().hex[:10]}"
    admin = urlunsplit(urlsplit(DATABASE_URL)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(DATABASE_URL)._replace(path=f"/{name}"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def client_program(slices: int) -> str:
    return f"""
import json, dcp
job = dcp.compute_for(1, {slices}, "def work(x):\\n    return x * 3\\n")
events = []
job.on("result", lambda event: events.append(event["slice"]))
values = job.exec(slice_payment_offer="0.001").values()
print(json.dumps({{"job": job.id, "ok": values == [x * 3 for x in range(1, {slices} + 1)],
                  "events": sorted(events)}}))
"""


def test_two_processes_share_the_work_and_events_cross_between_them(
    shared_database: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": shared_database, "REDIS_URL": REDIS_URL}
    first = LiveSite(tmp_path / "a", extra_env=env)
    second = LiveSite(tmp_path / "b", extra_env=env)
    first.migrate()
    home = tmp_path / "home"
    first.seed(home, PASSWORD)
    first.start()
    second.start()
    processes = []
    try:
        for site in (first, second):  # two synthetic workers on each process
            session = log_in(site.url, "worker@example.com", PASSWORD)
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "testkit.synthetic_worker",
                        "--url",
                        site.url,
                        "--session",
                        session,
                        "--workers",
                        "2",
                        "--delay",
                        "0.002",
                    ],
                    cwd=REPO,
                )
            )
        clients = [
            subprocess.Popen(
                [sys.executable, "-c", client_program(1500)],
                cwd=REPO,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, "DCP_HOMEDIR": str(home), "DCP_SCHEDULER_URL": site.url},
            )
            for site in (first, second)
        ]
        outcomes = []
        for client in clients:
            stdout, stderr = client.communicate(timeout=180)
            assert client.returncode == 0, stderr
            outcomes.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for process in processes:
            process.kill()
            process.wait()
        first.stop()
        second.stop()

    import psycopg

    with psycopg.connect(shared_database) as connection:
        for outcome in outcomes:
            assert outcome["ok"]
            # Each slice's result reached the client once, wherever it was computed.
            assert outcome["events"] == list(range(1, 1501))
            rows = connection.execute(
                "SELECT COUNT(*), MAX(attempts), COUNT(DISTINCT number) FROM scheduler_slice "
                "WHERE job_id = %s AND status = 'done'",
                (outcome["job"],),
            ).fetchall()
            # No slice was ever leased twice: nothing failed, so one attempt each.
            assert rows == [(1500, 1, 1500)]
        workers_used = connection.execute("SELECT COUNT(*) FROM scheduler_workertally").fetchone()
        assert workers_used == (1,)
        earned = connection.execute("SELECT slices, earned FROM scheduler_workertally").fetchone()
        assert earned == (3000, 3000 * 1_000_000)
        supply, held = connection.execute(
            "SELECT -SUM(balance) FILTER (WHERE kind = 'mint'), "
            "SUM(balance) FILTER (WHERE kind != 'mint') FROM bank_ledgeraccount"
        ).fetchone()
        assert supply == held
