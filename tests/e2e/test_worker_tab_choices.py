"""The Worker tab's choices in headless Chromium: "Pay into" another of the person's accounts,
changed while started (paid there, the "Paid into" figure follows, remembered after a reload), a
pasted address the scheduler does not know (refused with its message), and "CPU use" passed to
the supervisor."""

from __future__ import annotations

from typing import Any

from testkit.livesite import LiveSite
from tests.e2e.conftest import deploy_in_background, wait_for
from tests.e2e.portal_flows import Person, figure

SQUARES = """
import json, dcp

def work(x):
    progress()
    return x * x

results = dcp.compute_for(1, 12, work).exec(slice_payment_offer="0.01")
print(json.dumps(results.values()))
"""
UNKNOWN = "0x" + "12" * 20  # no account has it (and its EIP-55 form is itself)
# The browser says the machine runs on battery (the Battery Status API: the machine's edge).
ON_BATTERY = """
Object.defineProperty(Navigator.prototype, "getBattery", {
  configurable: true,
  value: async () => ({
    charging: false, level: 0.5, addEventListener() {}, removeEventListener() {},
  }),
});
"""


def new_account(person: Person, site: LiveSite, label: str) -> str:
    """Make another account on the Accounts tab; returns its address."""
    page = person.page
    page.goto(f"{site.url}/portal/accounts/")
    page.get_by_label("Label of the new account").fill(label)
    page.get_by_role("button", name="New account keystore").click()
    card = page.locator("article.account", has_text=label)
    return str(card.locator('[data-testid="address"]').inner_text())


def open_worker_tab(page: Any, site: LiveSite) -> None:
    page.goto(f"{site.url}/portal/worker/")
    page.get_by_label("Cores").select_option("1")


def paid_into(page: Any, name: str, amount: str) -> None:
    """Wait until the "Paid into" figure names `name` with `amount` credits."""
    page.locator('[data-testid="paid-into"]', has_text=name).wait_for()
    page.locator('[data-testid="paid-into-balance"]', has_text=amount).wait_for()
    assert figure(page, "paid-into-balance") == amount


def test_a_worker_tab_pays_into_the_chosen_account_and_refuses_an_unknown_address(
    payer: Person, volunteer: Person, portal_site: LiveSite
) -> None:
    savings = new_account(volunteer, portal_site, "savings")
    page = volunteer.page
    open_worker_tab(page, portal_site)
    paid_into(page, "default", "0")
    page.get_by_label("CPU use").select_option(label="25%")
    page.get_by_role("button", name="Start").click()
    log = page.locator('[data-testid="worker-log"] li')
    log.filter(has_text=f"credits go to {volunteer.account}").wait_for()
    # Changed while started: the tab starts again, its new hello naming savings.
    page.get_by_label("Pay into").select_option(savings)
    log.filter(has_text=f"credits go to {savings}").wait_for()
    paid_into(page, "savings", "0")
    assert page.evaluate("window.dcpSupervisor.pacing.dutyCycle") == 0.25
    page.get_by_label("CPU use").select_option(label="50%")  # changed while started
    assert page.evaluate("window.dcpSupervisor.pacing.dutyCycle") == 0.5
    pacing = page.locator('[data-testid="worker-pacing"]')
    assert pacing.is_hidden()
    wage = page.get_by_label("Minimum wage")
    wage.fill("0.000001")  # credits per CPU-second: far under what this job pays
    wage.blur()
    log.filter(has_text="Minimum wage 0.000001: starting again with it").wait_for()

    thread, outcome = deploy_in_background(portal_site, payer.home, SQUARES)
    assert wait_for(page, thread, outcome) == [x * x for x in range(1, 13)]
    # 12 slices at 0.01, all into savings; the person's own tallies count them too.
    assert portal_site.ledger_balance(savings) == 12 * 10_000_000
    assert portal_site.ledger_balance(volunteer.account) == 0
    paid_into(page, "savings", "0.12")
    page.locator('[data-testid="credits-earned"]', has_text="0.12").wait_for()

    page.reload()
    assert page.get_by_label("Pay into").input_value() == savings
    assert page.get_by_label("CPU use").input_value() == "0.5"
    assert page.get_by_label("Minimum wage").input_value() == "0.000001"
    assert "credits per CPU-second" in figure(page, "market-price")
    page.get_by_label("Minimum wage").fill("")
    page.get_by_label("Minimum wage").blur()
    paid_into(page, "savings", "0.12")
    assert figure(page, "credits-earned") == "0.12"

    page.get_by_label("Pay into").select_option(label="Another address…")
    address = page.get_by_label("Account address")
    address.fill("0x1234")
    address.press("Enter")
    problem = page.locator('[data-testid="pay-into-problem"]')
    assert "0x1234 is not an account address: an account address is 0x and 40 hex" in (
        problem.inner_text()
    )
    address.fill(volunteer.account.lower())  # one of the person's own: picked in the list
    address.press("Enter")
    assert page.get_by_label("Pay into").input_value() == volunteer.account
    paid_into(page, "default", "0")
    page.get_by_label("Pay into").select_option(label="Another address…")
    address.fill(UNKNOWN)
    address.press("Enter")
    assert problem.is_hidden()
    paid_into(page, UNKNOWN, "0")
    assert "for its holder to see" in figure(page, "paid-into-note")
    page.get_by_role("button", name="Start").click()
    status = page.locator('[data-testid="worker-status"][data-state="error"]')
    status.wait_for()
    assert status.inner_text() == f"no account with address {UNKNOWN}"

    page.context.add_init_script(ON_BATTERY)
    page.reload()
    assert page.get_by_label("Pay into").input_value() == "other"
    assert page.get_by_label("Account address").input_value() == UNKNOWN
    page.get_by_label("Pay into").select_option(savings)
    page.get_by_role("button", name="Start").click()
    pacing.filter(has_text="holding back: on battery").wait_for()
    page.get_by_role("button", name="Stop").click()
    pacing.wait_for(state="hidden")
