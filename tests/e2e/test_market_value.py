"""A job deployed at market value, end to end with a Worker tab in headless Chromium: the
client program hears its estimate (the `accepted` event, after the estimation slices, with the
job's status `estimation` before), runs out of its small budget (`nofunds`, status `paused`),
adds what the event says it needs with `job.escrow()`, and gets every result; the worker is paid
per measured CPU-second (what the estimation slices cost beyond the tiny budget was owed, then
paid first), the payer's account lost exactly what the job paid, and the Jobs tab shows the
job's rate."""

from __future__ import annotations

from decimal import Decimal

from testkit.livesite import LiveSite
from tests.e2e.conftest import deploy_in_background, wait_for
from tests.e2e.portal_flows import Person, figure, start_worker

PROGRAM = """
import json, time
from decimal import Decimal
import dcp

def work(x):
    import time
    began = time.process_time()
    while time.process_time() - began < 0.05:  # 50 ms of CPU a slice
        progress()
    return x * x

job = dcp.compute_for(1, 12, work)
seen = {"statuses": []}
job.on("status", lambda status: seen["statuses"].append(status["status"]))
job.on("accepted", lambda event: seen.setdefault("estimate", event.get("estimate")))

def top_up(event):
    seen["nofunds"] = event
    seen["escrow"] = str(job.escrow(Decimal(event["needed"]) * 3))

job.on("nofunds", top_up)
results = job.exec(dcp.market_value(budget="0.000001"))
seen["values"] = list(results.values())
seen["job"] = job.id
print(json.dumps(seen))
"""


def test_a_market_value_job_is_estimated_pauses_on_nofunds_and_resumes_after_escrow(
    payer: Person, volunteer: Person, portal_site: LiveSite
) -> None:
    assert payer.home is not None
    before = portal_site.ledger_balance(payer.account)
    thread, outcome = deploy_in_background(portal_site, payer.home, PROGRAM)
    start_worker(volunteer.page, portal_site)
    seen = wait_for(volunteer.page, thread, outcome)

    assert seen["values"] == [x * x for x in range(1, 13)]
    assert seen["statuses"][0] == "estimation" and "paused" in seen["statuses"]
    estimate = seen["estimate"]
    assert estimate["slices"] == 12 and estimate["cpuSecondsPerSlice"] > 0.04
    assert Decimal(estimate["cost"]) > 0 and Decimal(estimate["rate"]) > 0
    assert Decimal(seen["nofunds"]["needed"]) > 0 and Decimal(seen["escrow"]) > 0

    job = portal_site.query(
        "SELECT paid, cpu_ms, cpu_rate FROM scheduler_job WHERE id = ?", (seen["job"],)
    )[0]
    paid, cpu_ms, rate = (int(job[0]), float(job[1]), int(job[2]))
    assert paid >= rate * cpu_ms / 1000  # per measured CPU-second, each result at least 1 unit
    assert before - portal_site.ledger_balance(payer.account) == paid  # the rest came back
    page = volunteer.page
    page.locator('[data-testid="slices-computed"]', has_text="12").wait_for()
    page.reload()  # what was owed for the estimation slices was paid later, not in their acks
    assert Decimal(figure(page, "credits-earned")) == Decimal(paid) / 10**9
    jobs = payer.page
    jobs.goto(f"{portal_site.url}/portal/jobs/")
    row = jobs.locator('[data-testid="job-row"]', has=jobs.locator(f"text={seen['job']}"))
    rate = Decimal(rate) / 10**9
    assert row.get_by_test_id("job-pricing").inner_text() == (
        f"market value: {rate.normalize():f} credits per CPU-second"
    )
