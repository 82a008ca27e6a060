"""The browser client (/dcp-client/dcp-client.js) in headless Chromium: the uppercase example
paid with the session on the portal's own page, a page on another origin with an API key, and
a Python job that requires a Pyodide package and wheels made in the page."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from testkit.livesite import LiveSite
from testkit.wheels import make_wheel
from tests.conftest import PYODIDE_TOY
from tests.e2e.portal_flows import Person, start_worker

START_CREDITS = 10 * 10**9
UNITS_PER_CREDIT = 10**9

# A page of someone else's site: it takes the portal's address and the API key from its URL
# fragment, so the file holds no secret, and leaves what happened in `window.outcome`.
OTHER_SITE_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Tens, computed elsewhere</title></head>
<body>
<h1>Tens</h1>
<script src="{portal}/dcp-client/dcp-client.js"></script>
<script>
  const settings = new URLSearchParams(location.hash.slice(1));

  async function refusedWithoutAKey() {{
    try {{
      await dcp.compute.for([1], "function (x) {{ return x }}").exec(0.001);
      return "deployed";
    }} catch (error) {{
      return error.code;
    }}
  }}

  async function tens() {{
    dcp.init({{ scheduler: settings.get("scheduler"), apiKey: settings.get("key") }});
    const job = dcp.compute.for(1, 4, function (x) {{ progress(); return x * 10; }});
    job.public = {{ name: "tens from another origin" }};
    const states = [];
    const seen = [];
    job.on("readystatechange", (state) => states.push(state));
    job.on("result", ({{ sliceNumber }}) => seen.push(sliceNumber));
    const values = await job.exec(0.002);
    return {{ values, states, seen: seen.sort(), jobId: job.id }};
  }}

  // At the market value (the default offer): more credits added while it runs.
  async function atMarketValue() {{
    const job = dcp.compute.for([5, 6], function (x) {{ progress(); return x + 1; }});
    const escrowed = new Promise((resolve) => {{
      job.on("accepted", () => job.escrow("0.01").then(resolve, (error) => resolve(error.code)));
    }});
    const values = await job.exec();
    return {{ values, escrowed: await escrowed, jobId: job.id }};
  }}

  // NumPy is in the portal's lock file, but the portal serves none of its files.
  function requiringNumpy() {{
    const job = dcp.compute.for([1], "def work(x):\\n    return x\\n").requires("numpy");
    job.language = "python";
    return job.exec(0.001).then(() => "deployed", (error) => error.code);
  }}

  // The portal's session cookie is sent along, but the API neither accepts it without the
  // CSRF token nor lets another origin read the answer.
  function withCookies() {{
    const url = new URL("/api/v0/accounts", settings.get("scheduler"));
    return fetch(url, {{ credentials: "include" }}).then((r) => r.status, () => "blocked");
  }}

  (async () => {{
    const before = {{ withoutKey: await refusedWithoutAKey(), withCookies: await withCookies() }};
    try {{
      const values = await tens();
      const numpy = await requiringNumpy();
      window.outcome = {{ ...before, ...values, numpy, market: await atMarketValue() }};
    }} catch (error) {{
      window.outcome = {{ ...before, error: `${{error.code}}: ${{error.message}}` }};
    }}
  }})();
</script>
</body>
</html>
"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def other_site(tmp_path: Path, portal_site: LiveSite) -> Iterator[str]:
    """A second local web server, on another port: another origin than the portal's."""
    (tmp_path / "tens.html").write_text(OTHER_SITE_PAGE.format(portal=portal_site.url))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def lines(page: Any, label: str) -> list[str]:
    return page.get_by_label(label).input_value().splitlines()


def create_api_key(person: Person, site: LiveSite, label: str) -> str:
    """Create an API key on the First Devs tab, as a person would, and copy it."""
    page = person.page
    page.goto(f"{site.url}/portal/first-devs/")
    page.get_by_label("Label", exact=True).fill(label)
    page.get_by_role("button", name="Create API key").click()
    return str(page.locator('[data-testid="new-api-key"]').inner_text()).strip()


def test_the_uppercase_example_asks_which_account_pays_then_deploys_and_pays_exactly(
    payer: Person, volunteer: Person, portal_site: LiveSite
) -> None:
    start_worker(volunteer.page, portal_site)
    page = payer.page
    page.goto(f"{portal_site.url}/examples/uppercase/")
    page.get_by_label("Letters").fill("dcpweb")

    # Cancel in the dialog: nothing is deployed, nothing is paid.
    page.get_by_role("button", name="Distribute").click()
    dialog = page.get_by_role("dialog", name="Which account pays?")
    dialog.get_by_role("button", name="Cancel").click()
    page.get_by_text("ECANCELLED: no account was chosen").wait_for()
    assert portal_site.query(
        "SELECT COUNT(*) FROM scheduler_job WHERE identity = ?", (payer.identity,)
    ) == [(0,)]

    page.get_by_role("button", name="Distribute").click()
    assert "6 slices at 0.001 credits each: up to 0.006 credits" in dialog.inner_text()
    assert "10 credits" in str(dialog.locator("label", has_text=payer.account).inner_text())
    dialog.get_by_role("radio", name=re.compile(payer.account)).check()
    dialog.get_by_role("button", name="Pay and deploy").click()
    page.get_by_text("Done: DCPWEB").wait_for(timeout=180_000)

    assert not dialog.is_visible()
    assert sorted(lines(page, "Results")) == [
        f"slice {n}: {letter}" for n, letter in enumerate("DCPWEB", start=1)
    ]
    assert lines(page, "Ready state") == [
        "exec",
        "init",
        "preauth",
        "deploying",
        "deployed",
        "complete",
    ]
    # 6 slices at 0.001 credits: exactly 0.006 credits left the account the payer picked.
    spent = 6 * UNITS_PER_CREDIT // 1000
    assert portal_site.ledger_balance(payer.account) == START_CREDITS - spent
    assert portal_site.ledger_balance(volunteer.account) == spent
    jobs = portal_site.query(
        "SELECT identity, payer, status FROM scheduler_job WHERE identity = ?", (payer.identity,)
    )
    assert jobs == [(payer.identity, payer.account, "finished")]


def test_a_page_on_another_origin_deploys_with_an_api_key(
    payer: Person, volunteer: Person, portal_site: LiveSite, other_site: str
) -> None:
    start_worker(volunteer.page, portal_site)
    key = create_api_key(payer, portal_site, "tens-page")
    assert key.startswith("dcp_")

    page = payer.page  # the payer's browser is signed in to the portal: no cookie may be used
    page.goto(f"{other_site}/tens.html#scheduler={portal_site.url}&key={key}")
    page.wait_for_function("() => window.outcome !== undefined", timeout=180_000)
    outcome = page.evaluate("() => window.outcome")

    assert outcome.get("error") is None, outcome
    assert outcome["withoutKey"] == "EAUTH"
    assert outcome["values"] == [10, 20, 30, 40]
    assert outcome["seen"] == [1, 2, 3, 4]
    assert outcome["states"] == ["exec", "init", "deploying", "deployed", "complete"]
    market = outcome["market"]
    # What the escrow held once the 0.01 credits were in: the budget and them, less what the
    # job had paid by then.
    assert market["values"] == [6, 7] and Decimal(market["escrowed"]) > 0
    ((market_paid, rate),) = portal_site.query(
        "SELECT paid, cpu_rate FROM scheduler_job WHERE id = ?", (market["jobId"],)
    )
    assert rate > 0 and market_paid > 0  # paid per CPU-second, the rest of its escrow refunded
    # 4 slices at 0.002 credits, from the account the API key pays from, and the market job.
    spent = 4 * 2 * UNITS_PER_CREDIT // 1000 + market_paid
    assert portal_site.ledger_balance(payer.account) == START_CREDITS - spent
    assert portal_site.ledger_balance(volunteer.account) == spent
    assert outcome["withCookies"] == "blocked"
    assert outcome["numpy"] == "ENOPACKAGE"  # refused by the page, before anything is sent
    assert portal_site.query(
        "SELECT COUNT(*) FROM scheduler_job WHERE identity = ?", (payer.identity,)
    ) == [(2,)]


# Runs in a portal page: two jobs whose requires name a package the portal does not offer, then
# one that requires the portal's Pyodide package and two wheels, given as a File and as
# {file, bytes}. What happened is left in `window.refused`, `.unserved` and `.outcome`.
REQUIRES_SCRIPT = """({ work, plusOne, twice }) => {
  const bytes = (wheel) => Uint8Array.from(atob(wheel.data), (c) => c.charCodeAt(0));
  const plusOneFile = new File([bytes(plusOne)], plusOne.file);
  const twiceWheel = { file: twice.file, bytes: bytes(twice) };
  const failure = (error) => ({ code: error.code, message: error.message });
  const pythonJob = (...requires) => {
    const job = dcp.compute.for([1, 2, 3], work).requires(...requires);
    job.language = "python";
    return job;
  };
  (async () => {
    const unknown = pythonJob("nosuchpackage", plusOneFile);
    window.refused = await unknown.exec(0.001).then(() => "deployed", failure);
    const unserved = pythonJob(plusOneFile, "numpy"); // listed in the lock file, not served
    window.unserved = await unserved.exec(0.001).then(() => "deployed", failure);
    const job = pythonJob(["pyodidetoy", plusOneFile], twiceWheel);
    window.outcome = await job.exec(0.001).then((values) => ({ values }), failure);
  })();
}"""

WORK = """def work(n):
    import plusone, pyodidetoy, twice
    return twice.twice(plusone.plus_one(pyodidetoy.triple(n)))
"""


def wheel_for_page(name: str, source: str) -> dict[str, str]:
    file, data = make_wheel(name, "1.0", {f"{name}.py": source})
    return {"file": file, "data": base64.b64encode(data).decode(), "sha256": sha256_of(data)}


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_portal_page_requires_a_pyodide_package_and_wheels_but_not_an_unknown_name(
    payer: Person, volunteer: Person, portal_site: LiveSite
) -> None:
    start_worker(volunteer.page, portal_site)
    plus_one = wheel_for_page("plusone", "def plus_one(n):\n    return n + 1\n")
    twice = wheel_for_page("twice", "def twice(n):\n    return 2 * n\n")
    page = payer.page
    page.goto(f"{portal_site.url}/examples/uppercase/")
    page.evaluate(REQUIRES_SCRIPT, {"work": WORK, "plusOne": plus_one, "twice": twice})

    # Names the portal does not offer (unknown, or listed without their files): refused
    # before the account dialog (no one clicked), nothing stored, nothing deployed.
    page.wait_for_function("() => window.unserved !== undefined")
    refused = page.evaluate("() => [window.refused, window.unserved]")
    for error, name in zip(refused, ("nosuchpackage", "numpy"), strict=True):
        assert error["code"] == "ENOPACKAGE", error
        assert f'"{name}"' in error["message"], error
        assert "cannot resolve names with pip" in error["message"]
        assert "wheel file instead" in error["message"]
    jobs = "SELECT status, requirements FROM scheduler_job WHERE identity = ?"
    assert portal_site.query(jobs, (payer.identity,)) == []
    assert f"/store/{plus_one['sha256']}" not in portal_site.requests_seen()

    dialog = page.get_by_role("dialog", name="Which account pays?")
    dialog.get_by_role("button", name="Pay and deploy").click()
    page.wait_for_function("() => window.outcome !== undefined", timeout=180_000)
    assert page.evaluate("() => window.outcome") == {"values": [8, 14, 20]}

    [(status, requirements)] = portal_site.query(jobs, (payer.identity,))
    assert status == "finished"
    requirements = json.loads(str(requirements))
    assert requirements["pyodide"] == ["pyodidetoy"]
    files = {(wheel["file"], wheel["sha256"]) for wheel in requirements["packages"]}
    assert files == {(w["file"], w["sha256"]) for w in (plus_one, twice)}
    # Each wheel stored once, with the session, as the payer's (the scheduler deploys only
    # wheels the deployer owns); the Pyodide package's file is the repository's.
    log = portal_site.requests_seen()
    for wheel in (plus_one, twice):
        assert log.count(f'"PUT /store/{wheel["sha256"]}') == 1
    assert f"/worker/vendor/pyodide/{PYODIDE_TOY[0]}" in log
