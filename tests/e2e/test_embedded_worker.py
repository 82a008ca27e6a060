"""A worker embedded in another site's page (/dcp-client/dcp-worker.js) in headless Chromium: the
embedded-worker example, served from a second origin that the portal lists, computes a job and
its account is paid; served from a third origin that it does not list, it is refused in words,
and the portal's worker frame does not show there."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest

from testkit.livesite import LiveSite
from tests.conftest import PASSWORD
from tests.e2e.conftest import deploy_in_background, wait_for

UNITS_PER_CREDIT = 10**9
OFFER = "0.01"

TRIPLES = f"""
import json, dcp

def work(x):
    return x * 3

job = dcp.compute_for(1, 4, work)
job.public = {{"name": "triples for an embedded worker"}}
print(json.dumps({{"values": job.exec(slice_payment_offer={OFFER!r}).values()}}))
"""


class SiteHandler(SimpleHTTPRequestHandler):
    """Someone else's web server: static files, and isolated.html cross-origin isolated."""

    def end_headers(self) -> None:
        if self.path.startswith("/isolated"):
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_site(directory: Path) -> Iterator[str]:
    """A web server on a port of its own (another origin than the portal's) serving `directory`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SiteHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Sites:
    portal: LiveSite
    shop: str  # listed in the portal's WORKER_EMBED_ORIGINS
    stranger: str  # not listed


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    """A portal that takes anonymous workers and lets `shop` embed one; both other sites serve
    the portal's embedded-worker example page, saved as a site owner would save it."""
    pages = tmp_path_factory.mktemp("pages")
    with static_site(pages) as shop, static_site(pages) as stranger:
        env = {"ALLOW_ANONYMOUS_WORKERS": "true", "WORKER_EMBED_ORIGINS": shop}
        portal = LiveSite(tmp_path_factory.mktemp("embedding-portal"), extra_env=env)
        portal.migrate()
        portal.start()
        try:
            with urlopen(f"{portal.url}/examples/embedded-worker/") as response:
                example = response.read()
            for name in ("index.html", "isolated.html"):
                (pages / name).write_bytes(example)
            yield Sites(portal=portal, shop=shop, stranger=stranger)
        finally:
            portal.stop()


@pytest.fixture
def visitor(browser: Any) -> Iterator[Any]:
    """A visitor of the sites, signed in nowhere."""
    context = browser.new_context()
    context.set_default_timeout(120_000)
    yield context.new_page()
    context.close()


def events(page: Any, name: str) -> list[dict[str, Any]]:
    """The details of the example page's `name` events, in the order they came."""
    lines = page.get_by_test_id("events").locator("li").all_inner_texts()
    return [json.loads(line.split(" ", 1)[1]) for line in lines if line.split(" ", 1)[0] == name]


def wait_for_event(page: Any, name: str) -> dict[str, Any]:
    page.get_by_test_id("events").locator("li", has_text=f"{name} {{").first.wait_for()
    return events(page, name)[0]


def start_example(page: Any, url: str, address: str) -> None:
    page.goto(url)
    page.get_by_label("Pay into").fill(address)
    page.get_by_role("button", name="Start").click()


def sandboxes_frame(page: Any) -> Any:
    """The frame of the sandboxes, inside the worker's frame inside the page."""
    found = [frame for frame in page.frames if frame.url.endswith("/worker/sandbox-host.html")]
    assert len(found) == 1, [frame.url for frame in page.frames]
    return found[0]


def new_account(site: LiveSite, email: str) -> str:
    created = site.manage("create_first_dev", email, "--password", PASSWORD)
    return str(json.loads(created)["account"])


def test_a_page_of_another_site_computes_a_job_and_its_account_is_paid(
    sites: Sites, visitor: Any, tmp_path: Path
) -> None:
    portal = sites.portal
    shop_account = new_account(portal, "shop@example.com")
    portal.seed(tmp_path, PASSWORD)
    before = portal.ledger_balance(shop_account)

    start_example(visitor, f"{sites.shop}/index.html", shop_account)
    assert wait_for_event(visitor, "start") == {"crossOriginIsolated": False}
    thread, outcome = deploy_in_background(portal, tmp_path, TRIPLES)
    assert wait_for(visitor, thread, outcome)["values"] == [3, 6, 9, 12]

    earned = 4 * UNITS_PER_CREDIT // 100  # 4 slices at 0.01 credits
    assert portal.ledger_balance(shop_account) == before + earned
    visitor.get_by_test_id("credits-earned").filter(has_text="0.04").wait_for()
    assert visitor.get_by_test_id("slices-computed").inner_text() == "4"
    assert sum(detail["accepted"] for detail in events(visitor, "result")) == 4
    assert events(visitor, "payment")[-1]["total"] == "0.04"
    assert events(visitor, "error") == []
    visitor.get_by_role("button", name="Stop").click()
    assert wait_for_event(visitor, "stop") == {"slicesComputed": 4, "creditsEarned": "0.04"}
    assert visitor.get_by_test_id("state").inner_text() == "stopped"

    # A cross-origin isolated page passes its isolation on to the worker's frame and sandboxes.
    start_example(visitor, f"{sites.shop}/isolated.html", shop_account)
    assert wait_for_event(visitor, "start") == {"crossOriginIsolated": True}
    assert sandboxes_frame(visitor).evaluate("() => crossOriginIsolated") is True
    visitor.get_by_role("button", name="Stop").click()
    wait_for_event(visitor, "stop")


def test_a_site_the_portal_does_not_list_is_refused_and_cannot_show_the_frame(
    sites: Sites, visitor: Any
) -> None:
    start_example(visitor, f"{sites.stranger}/index.html", "0x" + "ab" * 20)
    message = wait_for_event(visitor, "error")["message"]
    assert message.startswith(f"{sites.stranger} may not embed a worker of {sites.portal.url}")
    assert "WORKER_EMBED_ORIGINS" in message
    assert visitor.get_by_role("button", name="Start").is_enabled()

    # Framing the worker's page by hand: the browser shows nothing of it (frame-ancestors).
    embed_url = f"{sites.portal.url}/worker/embed.html"
    visitor.evaluate(
        """(url) => new Promise((loaded) => {
            const frame = document.createElement("iframe");
            frame.onload = loaded;
            frame.src = url;
            document.body.append(frame);
        })""",
        embed_url,
    )
    framed = [frame for frame in visitor.frames if frame is not visitor.main_frame]
    assert len(framed) == 1
    assert framed[0].locator("#state").count() == 0
