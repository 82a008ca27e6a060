"""The browser client (/dcp-client/dcp-client.js) in headless Chromium: the uppercase example
paid with the session on the portal's own page, and a page on another origin with an API key."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from testkit.livesite import LiveSite
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

  // The portal's session cookie is sent along, but the API neither accepts it without the
  // CSRF token nor lets another origin read the answer.
  function withCookies() {{
    const url = new URL("/api/v0/accounts", settings.get("scheduler"));
    return fetch(url, {{ credentials: "include" }}).then((r) => r.status, () => "blocked");
  }}

  (async () => {{
    const before = {{ withoutKey: await refusedWithoutAKey(), withCookies: await withCookies() }};
    try {{
      window.outcome = {{ ...before, ...(await tens()) }};
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
    # 4 slices at 0.002 credits, from the account the API key pays from.
    spent = 4 * 2 * UNITS_PER_CREDIT // 1000
    assert portal_site.ledger_balance(payer.account) == START_CREDITS - spent
    assert portal_site.ledger_balance(volunteer.account) == spent
    assert outcome["withCookies"] == "blocked"
