"""Account statements on the Accounts tab: every ledger entry with the balance it left, paged,
as a CSV file, and to the account's owner only."""

from __future__ import annotations

import csv
import io
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from html import unescape
from itertools import pairwise
from typing import Any

import pytest
from django.test import Client

from dcp.protocol.credits import to_units
from portal.bank import services as bank
from portal.scheduler.models import Job
from portal.wallet.models import Key, KeyKind
from portal.wallet.services import create_key
from tests.web.test_jobs_tab import compute, default_address, deploy
from tests.web.test_pages import csrf_post


@dataclass(frozen=True)
class Line:
    description: str
    note: str  # the small line under the description: the job, or a transfer's address
    amount: str
    balance: str


@dataclass
class History:
    """A First Dev's grant, deploy, transfer to her savings and cancel, and a volunteer paid
    for three results of her job."""

    job: Job
    default: str
    savings: str
    volunteer: str


def client_of(user: Any) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.fixture
def history(first_dev, volunteer) -> History:
    savings = create_key(user=first_dev, kind=KeyKind.ACCOUNT, label="savings").address
    job = deploy(first_dev, slices=10, offer="0.1", public={"name": "squares"})  # escrow 1
    compute(job, volunteer, 3)  # pays the volunteer 0.3 out of the escrow
    client = client_of(first_dev)
    transfer = {
        "source": default_address(first_dev),
        "target": savings,
        "amount": "2",
        "key_passphrase": "",
        "request_id": str(uuid.uuid4()),
    }
    csrf_post(client, "/portal/accounts/", "/portal/accounts/transfer/", transfer)
    csrf_post(client, "/portal/jobs/", f"/portal/jobs/{job.id}/cancel/", {})  # refunds 0.7
    return History(job, default_address(first_dev), savings, default_address(volunteer))


def statement(client: Client, address: str, page: int = 1) -> list[Line]:
    response = client.get(f"/portal/accounts/{address}/statement/?page={page}")
    assert response.status_code == 200
    rows = re.findall(
        r'<tr data-testid="statement-line">(.*?)</tr>', response.content.decode(), re.S
    )
    return [_line(row) for row in rows]


def _line(row: str) -> Line:
    def cell(pattern: str) -> str:
        found = re.search(pattern, row, re.S)
        return unescape(found.group(1).strip()) if found else ""

    return Line(
        description=cell(r'data-testid="description">(.*?)</span>'),
        note=cell(r'data-testid="note">(.*?)</span>'),
        amount=cell(r'data-testid="amount">(.*?)</td>'),
        balance=cell(r'data-testid="line-balance">(.*?)</td>'),
    )


def assert_balances_run(lines: list[Line]) -> None:
    """Each line's balance is the next older line's plus its own amount."""
    for newer, older in pairwise(lines):
        assert Decimal(older.balance) == Decimal(newer.balance) - Decimal(newer.amount)


def card_balance(client: Client, address: str) -> str:
    html = client.get("/portal/accounts/").content.decode()
    card = re.search(rf'data-address="{address}".*?data-testid="balance">([^<]+)<', html, re.S)
    return card.group(1)


def csv_rows(client: Client, address: str) -> list[dict[str, str]]:
    response = client.get(f"/portal/accounts/{address}/statement.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text, newline="")))


# --- what a statement says ----------------------------------------------------------------------


def test_a_statement_lists_the_grant_the_escrow_the_transfer_and_the_refund(first_dev, history):
    client = client_of(first_dev)

    lines = statement(client, history.default)

    job = f"job {history.job.id}"
    assert lines == [
        Line("Refund of the unspent escrow of job squares", job, "+0.7", "7.7"),
        Line("Transfer to your savings account", history.savings, "-2", "7"),
        Line("Escrow for job squares", job, "-1", "9"),
        Line("First Devs grant", "", "+10", "10"),
    ]
    assert statement(client, history.savings) == [
        Line("Transfer from your default account", history.default, "+2", "2")
    ]


def test_a_transfer_between_users_names_the_other_account(first_dev, volunteer):
    client = client_of(first_dev)
    payee = default_address(volunteer)
    transfer = {
        "source": default_address(first_dev),
        "target": payee,
        "amount": "1.25",
        "key_passphrase": "",
        "request_id": str(uuid.uuid4()),
    }
    csrf_post(client, "/portal/accounts/", "/portal/accounts/transfer/", transfer)

    sent = statement(client, default_address(first_dev))[0]
    received = statement(client_of(volunteer), payee)

    assert sent == Line("Transfer to another account", payee, "-1.25", "8.75")
    assert received == [
        Line("Transfer from another account", default_address(first_dev), "+1.25", "1.25")
    ]


def test_a_worker_payment_names_the_results_and_the_job(volunteer, history):
    lines = statement(client_of(volunteer), history.volunteer)

    assert lines == [
        Line("Worker payment for 3 results of job squares", f"job {history.job.id}", "+0.3", "0.3")
    ]


def test_a_worker_payment_shows_what_the_account_got_after_the_commission(
    first_dev, volunteer, settings
):
    settings.SCHEDULER_COMMISSION_PERCENT = "10"
    job = deploy(first_dev, slices=10, offer="0.1", public={"name": "squares"})
    compute(job, volunteer, 3)
    client = client_of(volunteer)

    lines = statement(client, default_address(volunteer))

    assert lines == [
        Line("Worker payment for 3 results of job squares", f"job {job.id}", "+0.27", "0.27")
    ]
    assert card_balance(client, default_address(volunteer)) == "0.27"


def test_each_statement_ends_at_the_balance_its_account_card_shows(first_dev, volunteer, history):
    """After a deploy, a worker payment and a transfer, the newest line's balance is the card's,
    and the oldest line's is its own amount: the entries add up to the stored balance."""
    owners = {history.default: first_dev, history.savings: first_dev}
    owners[history.volunteer] = volunteer
    for address, owner in owners.items():
        client = client_of(owner)
        lines = statement(client, address)
        assert lines[0].balance == card_balance(client, address), address
        assert lines[-1].balance == lines[-1].amount.removeprefix("+"), address
        assert_balances_run(lines)


def test_the_account_card_links_to_its_statement(first_dev, history):
    html = client_of(first_dev).get("/portal/accounts/").content.decode()

    for address in (history.default, history.savings):
        assert f'href="/portal/accounts/{address}/statement/"' in html


def test_an_account_without_entries_says_so(first_dev):
    savings = create_key(user=first_dev, kind=KeyKind.ACCOUNT, label="savings").address

    html = client_of(first_dev).get(f"/portal/accounts/{savings}/statement/").content.decode()

    assert 'data-testid="statement-empty"' in html
    assert re.search(r'data-testid="balance">0<', html)


# --- paging and the CSV file --------------------------------------------------------------------


@pytest.fixture
def busy_account(first_dev) -> tuple[str, str]:
    """The default account after the grant and 120 transfers of 0.01 to savings: 121 entries."""
    default = default_address(first_dev)
    savings = create_key(user=first_dev, kind=KeyKind.ACCOUNT, label="savings").address
    source, target = bank.account_for_address(default), bank.account_for_address(savings)
    for n in range(120):
        bank.transfer(
            source=source, target=target, amount=to_units("0.01"), idempotency_key=f"t{n}"
        )
    return default, savings


def test_a_long_statement_is_paged_fifty_lines_newest_first(first_dev, busy_account):
    client = client_of(first_dev)
    default, _ = busy_account

    pages = [statement(client, default, page) for page in (1, 2, 3)]

    assert [len(lines) for lines in pages] == [50, 50, 21]
    lines = [line for page in pages for line in page]
    assert lines[0].balance == card_balance(client, default) == "8.8"
    assert lines[-1] == Line("First Devs grant", "", "+10", "10")
    assert_balances_run(lines)  # across the pages too


def test_the_page_links_lead_to_newer_and_older_entries(first_dev, busy_account):
    client = client_of(first_dev)
    default, _ = busy_account
    url = f"/portal/accounts/{default}/statement/"

    links = {}
    for page in (1, 2, 3):
        html = client.get(f"{url}?page={page}").content.decode()
        links[page] = dict(re.findall(r'rel="(prev|next)" href="\?page=(\d+)"', html))
        assert f"Page {page} of 3 · 121 entries, newest first" in html

    assert links == {1: {"next": "2"}, 2: {"prev": "1", "next": "3"}, 3: {"prev": "2"}}
    for page in ("4", "0", "last", "-1", "²", "1" * 30):
        assert client.get(f"{url}?page={page}").status_code == 404


def test_the_csv_file_holds_the_same_lines_as_the_pages(first_dev, busy_account):
    client = client_of(first_dev)
    default, savings = busy_account
    lines = [line for page in (1, 2, 3) for line in statement(client, default, page)]

    rows = csv_rows(client, default)

    assert list(rows[0]) == ["time", "description", "job", "counterparty", "amount", "balance"]
    in_csv = [Line(r["description"], r["counterparty"], r["amount"], r["balance"]) for r in rows]
    assert in_csv[:-1] == lines[:-1]  # a transfer's note is its counterparty
    assert in_csv[-1] == Line("First Devs grant", "system:mint", "+10", "10")
    assert {r["counterparty"] for r in rows} == {savings, "system:mint"}
    times = [datetime.fromisoformat(r["time"]) for r in rows]
    assert all(r["time"].endswith("Z") for r in rows)
    assert times == sorted(times, reverse=True)


def test_the_csv_file_names_the_jobs_and_counterparties(first_dev, history):
    rows = csv_rows(client_of(first_dev), history.default)

    escrow = f"escrow:{history.job.id}"
    assert [(r["description"], r["job"], r["counterparty"], r["amount"]) for r in rows] == [
        ("Refund of the unspent escrow of job squares", history.job.id, escrow, "+0.7"),
        ("Transfer to your savings account", "", history.savings, "-2"),
        ("Escrow for job squares", history.job.id, escrow, "-1"),
        ("First Devs grant", "", "system:mint", "+10"),
    ]
    assert rows[0]["balance"] == "7.7"


# --- who may see it -----------------------------------------------------------------------------


def test_another_users_statement_is_not_found(volunteer, history):
    client = client_of(volunteer)

    for address in (history.default, history.savings):
        assert client.get(f"/portal/accounts/{address}/statement/").status_code == 404
        assert client.get(f"/portal/accounts/{address}/statement.csv").status_code == 404


def test_an_identity_key_has_no_statement(first_dev):
    identity = create_key(user=first_dev, kind=KeyKind.IDENTITY, label="laptop").address

    response = client_of(first_dev).get(f"/portal/accounts/{identity}/statement/")

    assert response.status_code == 404


def test_a_signed_out_visitor_is_sent_to_sign_in(client, first_dev):
    address = Key.objects.get(user=first_dev, is_default=True).address

    for suffix in ("statement/", "statement.csv"):
        response = client.get(f"/portal/accounts/{address}/{suffix}")
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
