"""A newcomer signs up, verifies their email, joins First Devs and downloads both keystores."""

from __future__ import annotations

import json
import uuid
from typing import Any

from eth_account import Account

from tests.conftest import PASSWORD
from tests.livesite import LiveSite


def sign_up(page: Any, site: LiveSite, email: str) -> None:
    page.goto(f"{site.url}/accounts/signup/")
    page.get_by_label("Email:").fill(email)
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again):").fill(PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    page.get_by_text("Verify Your Email Address").wait_for()
    page.goto(site.link_in_last_email(email, "/accounts/confirm-email/"))
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url("**/portal/accounts/")


def download_keystore(page: Any, button: Any, passphrase: str, tmp_path: Any) -> tuple[str, dict]:
    button.click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Keystore passphrase (optional)").fill(passphrase)
    with page.expect_download() as download_info:
        dialog.get_by_role("button", name="Save keystore").click()
    download = download_info.value
    target = tmp_path / f"{uuid.uuid4().hex}-{download.suggested_filename}"
    download.save_as(target)
    return download.suggested_filename, json.loads(target.read_text())


def test_newcomer_signs_up_joins_first_devs_and_downloads_both_keystores(
    page: Any, portal_site: LiveSite, tmp_path: Any
) -> None:
    email = f"newcomer-{uuid.uuid4().hex[:8]}@example.com"
    sign_up(page, portal_site, email)

    # The default account exists from verification on, with nothing in it yet.
    card = page.locator("article.account").first
    assert card.locator('[data-testid="balance"]').inner_text() == "0"
    account_address = card.locator('[data-testid="address"]').inner_text()

    # Joining First Devs in another tab credits the account behind this page's back...
    other = page.context.new_page()
    other.goto(f"{portal_site.url}/portal/first-devs/")
    other.get_by_role("button", name="Join First Devs").click()
    other.get_by_text("10 credits are in your default account").wait_for()

    # ...and "Refresh balance" shows it without reloading the page.
    page.evaluate("window.__notReloaded = true")
    card.get_by_role("button", name="Refresh balance").click()
    balance = card.locator('[data-testid="balance"]')
    balance.filter(has_text="10").wait_for()
    assert balance.inner_text() == "10"
    assert page.evaluate("window.__notReloaded") is True
    assert portal_site.ledger_balance(account_address) == 10 * 10**9

    name, keystore = download_keystore(
        page, card.get_by_role("button", name="Download"), "account pass", tmp_path
    )
    assert name == "default.keystore"
    assert Account.from_key(Account.decrypt(keystore, "account pass")).address == account_address

    other.get_by_label("Label of the new identity key").fill("laptop")
    other.get_by_role("button", name="New identity key").click()
    row = other.locator("li.key-row", has_text="laptop")
    identity_address = row.locator('[data-testid="identity-address"]').inner_text()
    name, keystore = download_keystore(
        other, row.get_by_role("button", name="Download"), "", tmp_path
    )
    assert name == "id.keystore"
    assert Account.from_key(Account.decrypt(keystore, "")).address == identity_address
    assert identity_address != account_address
