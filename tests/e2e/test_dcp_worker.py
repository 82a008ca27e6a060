"""`dcp worker` in headless Chromium: with a worker token, in a compute group, paid to the address
it names, while a public Worker tab stays idle; Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from testkit.livesite import REPO, LiveSite
from tests.e2e.conftest import volunteer_in
from tests.e2e.portal_flows import Person, figure, run_client, start_worker

GROUP_JOB = """
import json, dcp

def work(x):
    return x * x + 1

lab = {{"joinKey": {key!r}, "joinSecret": {secret!r}}}
job = dcp.compute_for(1, 10, work, compute_groups=[lab])
results = job.exec(slice_payment_offer="0.01")
print(json.dumps({{"values": results.values()}}))
"""


def new_worker_token(person: Person, site: LiveSite) -> str:
    page = person.page
    page.goto(f"{site.url}/portal/workers/")
    page.get_by_label("Name of the new worker token").fill("server room")
    page.get_by_role("button", name="Create worker token").click()
    return figure(page, "new-worker-token")


def new_compute_group(person: Person, site: LiveSite) -> tuple[str, str]:
    page = person.page
    page.goto(f"{site.url}/portal/compute-groups/")
    page.get_by_placeholder("name, e.g. lab machines").fill("lab")
    page.get_by_role("button", name="Create compute group").click()
    return figure(page, "join-key"), figure(page, "join-secret")


def headless_worker(site: LiveSite, log_file: Path, *flags: str) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    command = [sys.executable, "-m", "dcp", "worker", "--scheduler", site.url, "--cores", "1"]
    return subprocess.Popen(
        [*command, "--log-file", str(log_file), *flags],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_headless_worker_computes_its_groups_job_for_the_address_it_names(
    payer: Person, volunteer: Person, browser: Any, portal_site: LiveSite, tmp_path: Path
) -> None:
    people: Iterator[Person] = volunteer_in(browser, portal_site)
    beneficiary = next(people)  # paid by the headless worker, which is the volunteer's
    token = new_worker_token(volunteer, portal_site)
    key, secret = new_compute_group(payer, portal_site)
    start_worker(volunteer.page, portal_site)  # a public Worker tab, beside the group's worker
    log_file = tmp_path / "worker.log"
    flags = ["--token", token, "--join", f"{key},{secret}", "--leave-public-group"]
    worker = headless_worker(
        portal_site, log_file, *flags, "--payment-address", beneficiary.account
    )
    try:
        result = run_client(portal_site, payer.home, GROUP_JOB.format(key=key, secret=secret))
    finally:
        worker.send_signal(signal.SIGINT)
        out, err = worker.communicate(timeout=60)
        next(people, None)  # closes the beneficiary's browser context

    assert result["values"] == [x * x + 1 for x in range(1, 11)]
    assert portal_site.ledger_balance(beneficiary.account) == 10 * 10_000_000
    assert portal_site.ledger_balance(volunteer.account) == 0
    assert figure(volunteer.page, "slices-computed") == "0"  # the public tab got none of it
    assert worker.returncode == 0, err
    assert "stopping (SIGINT): handing in-flight slices back" in out
    assert out.strip().splitlines()[-1].startswith("stopped: 10 slices computed, 0.1 credits")
    log = log_file.read_text()
    assert f"compute groups {key}" in log and "public jobs not taken" in log
