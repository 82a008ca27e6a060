"""The Jobs tab in headless Chromium: live progress, the results file, and Cancel with a refund."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from testkit.livesite import LiveSite
from tests.e2e.conftest import deploy_in_background, wait_for
from tests.e2e.portal_flows import Person, figure, start_worker

SQUARES = """
import json, dcp

def work(x):
    progress()
    return x * x

job = dcp.compute_for(1, 12, work)
job.public = {"name": "squares for the jobs tab", "description": "twelve squares",
              "link": "https://example.com/squares"}
results = job.exec(slice_payment_offer="0.01")
print(json.dumps({"job": job.id, "values": results.values()}))
"""

# No worker is started for this one, so it stays running until it is cancelled.
SLEEPY = """
import json, dcp

def work(x):
    import time
    for _ in range(30):
        progress()
        time.sleep(1)
    return x

job = dcp.compute_for(1, 5, work)
job.public = {"name": "sleepy job"}
try:
    job.exec(slice_payment_offer="0.1")
except dcp.DCPError as error:
    print(json.dumps({"job": job.id, "code": error.code}))
"""


def deployed_job(site: LiveSite, page: Any, name: str, seconds: float = 60) -> str:
    """The id of the job called `name`, once the client's deploy has reached the scheduler."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rows = site.query(
            "SELECT id FROM scheduler_job WHERE json_extract(public, '$.name') = ?", (name,)
        )
        if rows:
            return str(rows[0][0])
        page.wait_for_timeout(250)
    raise AssertionError(f"no job named {name!r} was deployed")


def job_row(page: Any, job_id: str) -> Any:
    return page.locator(f'tr[data-job-id="{job_id}"]')


def cell(row: Any, testid: str) -> str:
    """A cell's text as written, not as styled (the status badge is shown in capitals)."""
    return " ".join(row.locator(f'[data-testid="{testid}"]').text_content().split())


def test_a_job_shows_live_progress_and_its_results_download(
    payer: Person, volunteer: Person, portal_site: LiveSite, tmp_path: Path
) -> None:
    thread, outcome = deploy_in_background(portal_site, payer.home, SQUARES)
    job_id = deployed_job(portal_site, payer.page, "squares for the jobs tab")

    page = payer.page
    page.goto(f"{portal_site.url}/portal/jobs/")
    row = job_row(page, job_id)
    assert cell(row, "job-name") == "squares for the jobs tab"
    assert "twelve squares" in row.inner_text()
    assert row.get_by_role("link", name="https://example.com/squares").get_attribute("rel") == (
        "noopener"
    )
    assert cell(row, "job-status") == "running"
    assert cell(row, "job-progress") == "0 / 12"
    assert cell(row, "job-escrow") == "0.12"
    page.get_by_test_id("jobs-live").wait_for()
    page.evaluate("window.loadedOnce = true")

    start_worker(volunteer.page, portal_site)
    row.locator('[data-testid="job-progress"]', has_text="12 / 12").wait_for(timeout=180_000)
    row.locator('[data-testid="job-status"]', has_text="finished").wait_for()
    assert page.evaluate("window.loadedOnce === true"), "the page reloaded"
    assert row.locator("progress").evaluate("bar => [bar.value, bar.max]") == [12, 12]
    assert cell(row, "job-paid") == "0.12"
    assert not row.locator('[data-testid="job-escrow"]').is_visible()
    assert row.get_by_role("button", name="Cancel").count() == 0
    assert wait_for(page, thread, outcome)["values"] == [x * x for x in range(1, 13)]

    with page.expect_download() as download_info:
        row.get_by_role("link", name="Results (JSON)").click()
    download = download_info.value
    assert download.suggested_filename == f"{job_id}-results.json"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    document = json.loads(target.read_text())
    assert document["job"] == job_id and document["status"] == "finished"
    assert document["total"] == document["computed"] == 12
    assert document["results"] == [{"slice": n, "value": n * n} for n in range(1, 13)]


def test_cancelling_a_running_job_refunds_its_escrow(payer: Person, portal_site: LiveSite) -> None:
    thread, outcome = deploy_in_background(portal_site, payer.home, SLEEPY)
    job_id = deployed_job(portal_site, payer.page, "sleepy job")
    assert portal_site.ledger_balance(payer.account) == 9_500_000_000  # 5 slices at 0.1 held

    page = payer.page
    page.goto(f"{portal_site.url}/portal/jobs/")
    row = job_row(page, job_id)
    assert cell(row, "job-status") == "running"
    assert cell(row, "job-escrow") == "0.5"
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Cancel").click()

    page.get_by_text("Job sleepy job cancelled; unspent credits refunded.").wait_for()
    row = job_row(page, job_id)
    assert cell(row, "job-status") == "cancelled"
    assert row.get_by_role("button", name="Cancel").count() == 0
    assert portal_site.ledger_balance(payer.account) == 10_000_000_000
    # The deploying client was told: its exec() raised with the cancel code.
    assert wait_for(page, thread, outcome, seconds=60) == {"job": job_id, "code": "ECANCELLED"}
    page.goto(f"{portal_site.url}/portal/accounts/")
    assert figure(page, "balance") == "10"
