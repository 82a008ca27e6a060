"""Verification as its users meet it: a plain client script deploys a job with
`verify=dcp.Quorum(2)` to a live daphne server; one volunteer's worker forges every result, two
honest volunteers' workers compute; the same liar also floods the scheduler and sends frames
over the limit. The script gets only true results, the liar earns nothing and is suspended,
the honest volunteers share what the job paid, and the ledger stays whole."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from dcp.protocol.credits import to_units
from dcp.protocol.limits import CLOSE_FLOOD, CLOSE_TOO_BIG, MAX_FRAME_BYTES
from testkit.livesite import REPO, LiveSite
from testkit.rogue_worker import RogueWorker
from testkit.synthetic_worker import log_in

# The live server keeps its own SQLite database, whatever DATABASE_URL says: once is enough.
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="runs in the SQLite pass of the suite only"
)
PASSWORD = "verification test password 42"
SLICES = 12


CLIENT = f"""
import json, dcp

def work(x):
    return x * x

job = dcp.compute_for(range({SLICES}), work, verify=dcp.Quorum(2))
seen = {{"duplicates": [], "status": None}}
job.on("duplicate-result", seen["duplicates"].append)
job.on("status", lambda data: seen.update(status=data))
values = job.exec(slice_payment_offer="0.01").values()
print(json.dumps({{"job": job.id, "values": values, "seen": seen}}))
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[LiveSite]:
    live = LiveSite(tmp_path)
    live.migrate()
    live.seed(tmp_path / "home", PASSWORD)  # payer@ and worker@example.com
    for email in ("liar@example.com", "third@example.com"):
        live.manage("create_first_dev", email, "--password", PASSWORD)
    live.home = tmp_path / "home"  # type: ignore[attr-defined]
    live.start()
    yield live
    live.stop()


def start_worker(site: LiveSite, email: str, lie: float = 0.0) -> subprocess.Popen[bytes]:
    session = log_in(site.url, email, PASSWORD)
    command = [sys.executable, "-m", "testkit.synthetic_worker", "--url", site.url]
    return subprocess.Popen([*command, "--session", session, "--lie", str(lie)], cwd=REPO)


def address_of(site: LiveSite, email: str) -> str:
    rows = site.query(
        "SELECT k.address FROM wallet_key k JOIN users_user u ON u.id = k.user_id "
        "WHERE u.email = ? AND k.is_default",
        (email,),
    )
    return str(rows[0][0])


def wait_for(condition: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


async def misbehave(site: LiveSite, session: str) -> tuple[int, list[str], int]:
    """A flood of frames, then a frame over the limit, each on its own socket: the close codes
    and what the scheduler said before closing."""
    flooder = await RogueWorker.connect(site.url, session)
    await flooder.flood({"type": "progress", "job": "0" * 32, "slices": [1]}, 5000)
    flood_closed = await flooder.close_code()
    told = [frame.get("code") for frame in flooder.seen if frame["type"] == "error"]
    giant = await RogueWorker.connect(site.url, session)
    with contextlib.suppress(OSError, websockets.ConnectionClosed):  # cut off mid-frame
        await giant.send({"type": "progress", "job": "x" * (MAX_FRAME_BYTES + 1), "slices": []})
    return flood_closed, told, await giant.close_code()


def test_a_verified_job_gets_true_results_and_the_liar_is_paid_nothing(site: LiveSite) -> None:
    env = {**os.environ, "DCP_HOMEDIR": str(site.home), "DCP_SCHEDULER_URL": site.url}  # type: ignore[attr-defined]
    env.pop("DATABASE_URL", None)
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT],
        env=env,
        cwd=site.home,
        stdout=subprocess.PIPE,
        text=True,  # type: ignore[attr-defined]
    )
    emails = ("liar@example.com", "worker@example.com", "third@example.com")
    before = {email: site.ledger_balance(address_of(site, email)) for email in emails}
    workers = [start_worker(site, "liar@example.com", lie=1.0)]
    try:
        # The liar answers first: every slice then needs two honest results that agree.
        wait_for(lambda: site.query("SELECT count(*) FROM scheduler_replica")[0][0] >= SLICES)
        liar_session = log_in(site.url, "liar@example.com", PASSWORD)
        flood_closed, told, giant_closed = asyncio.run(misbehave(site, liar_session))
        workers += [
            start_worker(site, email) for email in ("worker@example.com", "third@example.com")
        ]
        output, _ = client.communicate(timeout=120)
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait()
        client.kill()

    assert client.returncode == 0
    report = json.loads(output.strip().splitlines()[-1])
    assert report["values"] == [x * x for x in range(SLICES)]
    assert len(report["seen"]["duplicates"]) >= SLICES
    verification = report["seen"]["status"]["verification"]
    assert verification["quorum"] == 2 and verification["rejected"] == SLICES
    assert flood_closed == CLOSE_FLOOD and "ERATELIMIT" in told
    # The server takes the protocol's frame size (not its transport's 1 MiB default), so the
    # scheduler's own check answers a frame over it.
    assert giant_closed == CLOSE_TOO_BIG
    assert "Exception inside application" not in site.log_path.read_text()

    offer = to_units("0.01")
    earned = {e: site.ledger_balance(address_of(site, e)) - before[e] for e in emails}
    assert earned["liar@example.com"] == 0
    assert earned["worker@example.com"] + earned["third@example.com"] == 2 * SLICES * offer
    assert site.ledger_balance(f"escrow:{report['job']}") == 0
    suspended = site.query(
        "SELECT r.suspended_until FROM scheduler_workerreputation r "
        "JOIN users_user u ON u.id = r.user_id WHERE u.email = 'liar@example.com'"
    )
    assert suspended and suspended[0][0] is not None
    minted = -sum(
        row[0] for row in site.query("SELECT balance FROM bank_ledgeraccount WHERE kind = 'mint'")
    )
    held = sum(
        row[0] for row in site.query("SELECT balance FROM bank_ledgeraccount WHERE kind <> 'mint'")
    )
    assert minted == held  # no credit appeared or vanished
