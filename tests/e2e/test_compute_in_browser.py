"""Jobs deployed from Python are computed by Worker tabs in headless Chromium and paid for."""

from __future__ import annotations

import json

from testkit.livesite import LiveSite
from tests.e2e.conftest import deploy_in_background, wait_for
from tests.e2e.portal_flows import Person, figure, start_worker

SQUARES = """
import json, dcp

def work(x):
    progress(0.5)
    total = sum(range(20000))
    progress()
    return x * x + 1 + total - total

job = dcp.compute_for(1, {n}, work)
seen = []
job.on("result", lambda event: seen.append(event["slice"]))
results = job.exec(slice_payment_offer="0.01")
print(json.dumps({{"job": job.id, "values": results.values(), "keys": results.keys(),
                  "events": sorted(seen)}}))
"""


def test_a_python_job_is_computed_by_a_worker_tab_and_paid_exactly(
    payer: Person, volunteer: Person, portal_site: LiveSite
) -> None:
    worker_page = volunteer.page
    start_worker(worker_page, portal_site)
    thread, outcome = deploy_in_background(portal_site, payer.home, SQUARES.format(n=50))
    result = wait_for(worker_page, thread, outcome)

    assert result["values"] == [x * x + 1 for x in range(1, 51)]
    assert result["keys"] == list(range(1, 51))
    assert result["events"] == list(range(1, 51))

    # 50 slices at 0.01: the payer's balance fell by 0.5, the worker earned exactly 0.5.
    assert portal_site.ledger_balance(payer.account) == 9_500_000_000
    assert portal_site.ledger_balance(volunteer.account) == 500_000_000
    worker_page.locator('[data-testid="credits-earned"]', has_text="0.5").wait_for()
    assert figure(worker_page, "slices-computed") == "50"
    payer.page.goto(f"{portal_site.url}/portal/accounts/")
    assert figure(payer.page, "balance") == "9.5"
    worker_page.goto(f"{portal_site.url}/portal/accounts/")
    assert figure(worker_page, "balance") == "0.5"


def test_two_worker_tabs_share_a_job_and_one_closing_loses_nothing(
    payer: Person, volunteer: Person, portal_site: LiveSite
) -> None:
    first = volunteer.page
    second = first.context.new_page()
    start_worker(first, portal_site)
    start_worker(second, portal_site)
    thread, outcome = deploy_in_background(portal_site, payer.home, SQUARES.format(n=120))

    # Once both tabs have computed something, close the second one mid-job.
    for page in (first, second):
        page.wait_for_function(
            "Number(document.querySelector('[data-testid=\"slices-computed\"]').textContent) > 0",
            timeout=180_000,
        )
    second.close()
    result = wait_for(first, thread, outcome)

    assert result["values"] == [x * x + 1 for x in range(1, 121)]
    rows = portal_site.query(
        "SELECT COUNT(*), COUNT(DISTINCT number), SUM(status = 'done') FROM scheduler_slice "
        "WHERE job_id = ?",
        (result["job"],),
    )
    assert rows == [(120, 120, 120)]
    assert portal_site.ledger_balance(volunteer.account) == 120 * 10_000_000
    assert portal_site.ledger_balance(payer.account) == 10 * 10**9 - 120 * 10_000_000


def test_a_javascript_job_and_a_failing_python_job(
    payer: Person, volunteer: Person, portal_site: LiveSite
) -> None:
    start_worker(volunteer.page, portal_site)
    program = """
import json, dcp
job = dcp.compute_for([1, 2, 3], "function (x) { progress(); return x * 3 }", language="js")
print(json.dumps(job.exec(slice_payment_offer="0.001").values()))
"""
    thread, outcome = deploy_in_background(portal_site, payer.home, program)
    assert wait_for(volunteer.page, thread, outcome) == [3, 6, 9]

    failing = """
import json, dcp

def work(x):
    return 1 / (x - 2)

job = dcp.compute_for(1, 3, work)
errors = []
job.on("error", lambda event: errors.append(event))
try:
    job.exec(slice_payment_offer="0.001")
except dcp.DCPError as error:
    print(json.dumps({"code": error.code, "text": str(error), "errors": errors}))
"""
    thread, outcome = deploy_in_background(portal_site, payer.home, failing)
    reported = wait_for(volunteer.page, thread, outcome)
    assert reported["code"] == "ETOOMANYERRORS"
    assert "ZeroDivisionError" in reported["text"]
    assert "return 1 / (x - 2)" in reported["text"]
    assert reported["errors"] and reported["errors"][0]["slice"] == 2


def test_a_work_function_cannot_fetch_the_portal_and_leaks_nothing(
    payer: Person, volunteer: Person, portal_site: LiveSite
) -> None:
    start_worker(volunteer.page, portal_site)
    target = f"{portal_site.url}/portal/keys/{volunteer.account}/keystore/?leak=python"
    program = f"""
import json, dcp

def work(url):
    import js
    outcomes = []
    try:
        js.fetch(url)
        outcomes.append("fetch went out")
    except Exception as error:
        outcomes.append("blocked: " + str(error))
    try:
        import pyodide.http
        pyodide.http.open_url(url)
        outcomes.append("open_url went out")
    except Exception as error:
        outcomes.append("blocked: " + str(error))
    return outcomes

js_work = '''async function (url) {{
  try {{ await fetch(url.replace("python", "js")); return "fetch went out"; }}
  catch (error) {{ return "blocked: " + error.message; }}
}}'''
python = dcp.compute_for([{target!r}], work).exec(slice_payment_offer="0")
javascript = dcp.compute_for([{target!r}], js_work, language="js").exec(slice_payment_offer="0")
print(json.dumps({{"python": python.values(), "js": javascript.values()}}))
"""
    thread, outcome = deploy_in_background(portal_site, payer.home, program)
    result = wait_for(volunteer.page, thread, outcome)

    assert all(text.startswith("blocked") for text in result["python"][0]), result
    assert result["js"][0].startswith("blocked"), result
    seen = portal_site.requests_seen()
    assert "?leak=" not in seen, "a sandbox request reached the portal"
    assert f"/portal/keys/{volunteer.account}/keystore/" not in seen
    assert json.dumps(result).count("went out") == 0
