"""The full Compute API end to end: a live portal, a Worker tab in Chromium, the Python client."""

from __future__ import annotations

from typing import Any

import pytest

from testkit.livesite import REPO, LiveSite
from tests.e2e.conftest import deploy_in_background, wait_for
from tests.e2e.portal_flows import Person, start_worker

GROUPED_CONSOLE_AND_OPEN = """
import json, threading, dcp

def noisy(values):
    for _ in range(3):
        print("same line")
    print("sum", sum(values))
    progress()
    return sum(values)

job = dcp.compute_for(dcp.Range(1, 10, group=3), noisy)
console = []
job.on("console", lambda event: console.append(event))
grouped = job.exec(slice_payment_offer="0.001").values()

def double(x):
    return x * 2

open_job = dcp.compute_for([1, 2], double, auto_close=False)
finished = {}
runner = threading.Thread(target=lambda: finished.update(
    values=open_job.exec(slice_payment_offer="0.001").values()))
runner.start()
open_job.add_slices([3, 4])
open_job.add_slices([5])
open_job.close()
runner.join(120)
print(json.dumps({"grouped": grouped, "console": console, "open": finished.get("values")}))
"""

STALL_AND_CANCEL = """
import json, dcp

def stall(x):
    while True:
        pass

job = dcp.compute_for([1], stall)
job.progress_timeout = 2
stalls = []
job.on("noprogress", lambda event: stalls.append(event))
try:
    job.exec(slice_payment_offer="0.001")
    stalled = None
except dcp.DCPError as error:
    stalled = error.code

def busy(x):
    total = 0
    for i in range(200000):
        total += i % 7
    progress()
    return x

many = dcp.compute_for(1, 400, busy)
seen = []
def on_result(event):
    seen.append(event)
    if len(seen) == 5:
        many.cancel("enough for today")
many.on("result", on_result)
try:
    many.exec(slice_payment_offer="0.001")
    cancelled = None
except dcp.DCPError as error:
    cancelled = [error.code, error.message]
status = [j for j in dcp.jobs() if j["job"] == many.id][0]
print(json.dumps({"stalled": stalled, "stalls": len(stalls), "cancelled": cancelled,
                  "status": status}))
"""


def test_console_grouped_ranges_and_an_open_job_fed_in_three_batches(
    payer: Person, volunteer: Person, portal_site: LiveSite
) -> None:
    start_worker(volunteer.page, portal_site)
    thread, outcome = deploy_in_background(portal_site, payer.home, GROUPED_CONSOLE_AND_OPEN)
    result = wait_for(volunteer.page, thread, outcome)

    assert result["grouped"] == [6, 15, 24, 10]  # [1,2,3] [4,5,6] [7,8,9] [10]
    same = [e for e in result["console"] if e["message"] == "same line"]
    # Three identical lines per slice are told once, then as a count of repeats.
    assert {e["slice_number"] for e in same} == {1, 2, 3, 4}
    assert sum(e.get("count", 1) for e in same) == 12
    assert len(same) < 12
    assert result["open"] == [2, 4, 6, 8, 10]


def test_no_progress_twice_cancels_and_cancel_mid_job_refunds(
    payer: Person, volunteer: Person, portal_site: LiveSite
) -> None:
    start_worker(volunteer.page, portal_site)
    thread, outcome = deploy_in_background(portal_site, payer.home, STALL_AND_CANCEL)
    result = wait_for(volunteer.page, thread, outcome, seconds=300)

    assert result["stalled"] == "ENOPROGRESS"
    assert result["stalls"] >= 1
    assert result["cancelled"][0] == "ECANCELLED"
    assert "enough for today" in result["cancelled"][1]
    assert result["status"]["status"] == "cancelled"
    assert result["status"]["computed"] < 400
    # Whatever was not computed went back to the payer: spent == what the worker earned.
    earned = portal_site.ledger_balance(volunteer.account)
    assert portal_site.ledger_balance(payer.account) == 10 * 10**9 - earned
    volunteer.page.get_by_text("Waiting for work").wait_for(timeout=60_000)


@pytest.mark.timeout(400)
def test_the_example_notebook_runs_headless_against_the_portal(
    payer: Person, volunteer: Person, portal_site: LiveSite, monkeypatch: Any
) -> None:
    import nbformat
    from nbclient import NotebookClient

    start_worker(volunteer.page, portal_site)
    monkeypatch.setenv("DCP_SCHEDULER_URL", portal_site.url)
    monkeypatch.setenv("DCP_HOMEDIR", str(payer.home))
    notebook = nbformat.read(REPO / "examples" / "deploy_job.ipynb", as_version=4)
    client = NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            client.execute()
        except BaseException as error:
            outcome["error"] = error
        else:
            outcome["value"] = True

    import threading

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    wait_for(volunteer.page, runner, outcome, seconds=300)
    printed = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert str([x * x for x in range(1, 11)]) in printed
