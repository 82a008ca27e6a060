"""Fixtures of the end-to-end tests: a payer with keystores, a volunteer, a client in the
background while the browser's event loop keeps turning."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.livesite import LiveSite
from tests.e2e.portal_flows import Person, become_first_dev, run_client, sign_up


@pytest.fixture
def payer(browser: Any, portal_site: LiveSite, tmp_path: Path) -> Iterator[Person]:
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(60_000)
    person = sign_up(context.new_page(), portal_site)
    become_first_dev(person, portal_site, tmp_path / "payer-home")
    yield person
    context.close()


@pytest.fixture
def volunteer(browser: Any, portal_site: LiveSite) -> Iterator[Person]:
    yield from volunteer_in(browser, portal_site)


def volunteer_in(browser: Any, site: LiveSite) -> Iterator[Person]:
    """A person signed up in a context of `browser` of their own, for as long as it is used."""
    context = browser.new_context()
    context.set_default_timeout(120_000)
    person = sign_up(context.new_page(), site)
    yield person
    context.close()


def deploy_in_background(site: LiveSite, home: Path, program: str) -> tuple[threading.Thread, dict]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = run_client(site, home, program)
        except BaseException as error:  # reported by the test thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_for(page: Any, thread: threading.Thread, outcome: dict, seconds: float = 240) -> Any:
    """Keep the browser's event loop turning while the client program runs."""
    for _ in range(int(seconds * 4)):
        if not thread.is_alive():
            break
        page.wait_for_timeout(250)
    thread.join(timeout=1)
    if "error" in outcome:
        raise outcome["error"]
    assert "value" in outcome, "the client program did not finish in time"
    return outcome["value"]
