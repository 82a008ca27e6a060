"""What a person does on the portal, as reusable steps for the end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.livesite import REPO, LiveSite
from tests.conftest import PASSWORD


@dataclass
class Person:
    email: str
    page: Any
    account: str = ""
    identity: str = ""
    home: Path | None = None


def sign_up(page: Any, site: LiveSite, email: str | None = None) -> Person:
    """Sign up, open the verification link from the email, confirm: lands on the Accounts tab."""
    email = email or f"person-{uuid.uuid4().hex[:8]}@example.com"
    page.goto(f"{site.url}/accounts/signup/")
    page.get_by_label("Email:").fill(email)
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again):").fill(PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    page.get_by_text("Verify Your Email Address").wait_for()
    page.goto(site.link_in_last_email(email, "/accounts/confirm-email/"))
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url("**/portal/accounts/")
    person = Person(email=email, page=page)
    person.account = page.locator('[data-testid="address"]').first.inner_text()
    return person


def download(page: Any, button: Any, target: Path, passphrase: str = "") -> dict[str, Any]:
    """Click a Download button, answer the passphrase dialog, save the file as `target`
    (a folder: the file keeps the name the portal gave it)."""
    button.click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Keystore passphrase (optional)").fill(passphrase)
    with page.expect_download() as download_info:
        dialog.get_by_role("button", name="Save keystore").click()
    if target.is_dir():
        target = target / download_info.value.suggested_filename
    target.parent.mkdir(parents=True, exist_ok=True)
    download_info.value.save_as(target)
    return json.loads(target.read_text())


def become_first_dev(person: Person, site: LiveSite, home: Path) -> None:
    """Join First Devs, make an identity key and save both keystores in `home`/.dcp/."""
    page = person.page
    page.goto(f"{site.url}/portal/first-devs/")
    page.get_by_role("button", name="Join First Devs").click()
    page.get_by_label("Label of the new identity key").fill("e2e")
    page.get_by_role("button", name="New identity key").click()
    row = page.locator("li.key-row", has_text="e2e")
    person.identity = row.locator('[data-testid="identity-address"]').inner_text()
    download(page, row.get_by_role("button", name="Download"), home / ".dcp" / "id.keystore")
    page.goto(f"{site.url}/portal/accounts/")
    card = page.locator("article.account").first
    download(page, card.get_by_role("button", name="Download"), home / ".dcp" / "default.keystore")
    person.home = home


def start_worker(page: Any, site: LiveSite, cores: int = 1) -> None:
    page.goto(f"{site.url}/portal/worker/")
    page.get_by_label("Cores").select_option(str(cores))
    page.get_by_role("button", name="Start").click()


def figure(page: Any, testid: str) -> str:
    return page.locator(f'[data-testid="{testid}"]').inner_text().strip()


def run_client(site: LiveSite, home: Path, program: str, timeout: float = 240) -> Any:
    """Run a Python program that uses `dcp` as a developer would; it prints one JSON line."""
    env = {**os.environ, "DCP_HOMEDIR": str(home), "DCP_SCHEDULER_URL": site.url}
    env.pop("DATABASE_URL", None)
    completed = subprocess.run(
        [sys.executable, "-c", program],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(f"client failed:\n{completed.stdout}\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])
