"""A newcomer signs up, verifies their email, joins First Devs and downloads both keystores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eth_account import Account

from testkit.livesite import LiveSite
from tests.e2e.portal_flows import download, sign_up


def test_newcomer_signs_up_joins_first_devs_and_downloads_both_keystores(
    page: Any, portal_site: LiveSite, tmp_path: Path
) -> None:
    person = sign_up(page, portal_site)

    # The default account exists from verification on, with nothing in it yet.
    card = page.locator("article.account").first
    assert card.locator('[data-testid="balance"]').inner_text() == "0"
    account_address = person.account

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

    folder = tmp_path / "downloads"
    folder.mkdir()
    keystore = download(page, card.get_by_role("button", name="Download"), folder, "account pass")
    assert (folder / "default.keystore").exists()
    assert Account.from_key(Account.decrypt(keystore, "account pass")).address == account_address

    other.get_by_label("Label of the new identity key").fill("laptop")
    other.get_by_role("button", name="New identity key").click()
    row = other.locator("li.key-row", has_text="laptop")
    identity_address = row.locator('[data-testid="identity-address"]').inner_text()
    keystore = download(other, row.get_by_role("button", name="Download"), folder)
    assert (folder / "id.keystore").exists()
    assert Account.from_key(Account.decrypt(keystore, "")).address == identity_address
    assert identity_address != account_address

    # The key dialogs open and close by themselves: a click before the page's script has run
    # (here: with the script never arriving) still opens them.
    bare = page.context.new_page()
    bare.route("**/keys.js", lambda route: route.abort())
    bare.goto(f"{portal_site.url}/portal/accounts/")
    bare_card = bare.locator("article.account").first
    bare_card.get_by_role("button", name="Change keystore passphrase").click()
    dialog = bare.locator("dialog[open]")
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="detached")
    bare_card.get_by_role("button", name="Change keystore passphrase").click()
    dialog.get_by_label("New passphrase", exact=True).fill("key pass")
    dialog.get_by_label("Confirm new passphrase").fill("key pass")
    dialog.get_by_role("button", name="Save passphrase").click()
    bare.get_by_text("The keystore passphrase of").wait_for()

    # From now on a download asks for the key's passphrase as well.
    bare_card.get_by_role("button", name="Download").click()
    assert dialog.get_by_label("Current passphrase of this key").is_visible()
    bare.close()
