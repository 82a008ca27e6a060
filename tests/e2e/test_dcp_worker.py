"""`dcp worker` in headless Chromium: with a worker token, in a compute group, paid to the address
it names, while a public Worker tab stays idle; its Chromium killed, it starts a new one and
computes on; Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
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


def headless_worker(site: LiveSite, folder: Path, *flags: str) -> subprocess.Popen[str]:
    """`dcp worker` with these flags, its status lines in folder/worker.out (read while it
    runs) and its event log in folder/worker.log."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    command = [sys.executable, "-m", "dcp", "worker", "--scheduler", site.url, "--cores", "1"]
    with (folder / "worker.out").open("w") as out:
        return subprocess.Popen(
            [*command, "--log-file", str(folder / "worker.log"), *flags],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )


def kill_chromium_of(pid: int) -> int:
    """SIGKILL the Chromium that process `pid` started (through Playwright's driver), found in
    /proc: its browser process takes Playwright's pipe and, unlike its helpers, has no --type."""
    entries = (entry for entry in Path("/proc").iterdir() if entry.name.isdigit())
    parents = {child: parent for child, parent in map(_parent_of, entries) if child}
    descendants, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in descendants}
        grew = bool(more - descendants)
        descendants |= more
    browsers = [
        child
        for child in descendants - {pid}
        if "--remote-debugging-pipe" in (args := _arguments(child))
        and not any(arg.startswith("--type=") for arg in args)
    ]
    assert len(browsers) == 1, f"Chromium processes under {pid}: {browsers}"
    os.kill(browsers[0], signal.SIGKILL)
    return browsers[0]


def _parent_of(entry: Path) -> tuple[int, int]:
    """(pid, parent pid) of a process's /proc entry; (0, 0) for one that has gone."""
    try:
        stat = (entry / "stat").read_text()
    except OSError:
        return 0, 0
    return int(entry.name), int(stat.rsplit(")", 1)[1].split()[1])  # after the command's name


def _arguments(pid: int) -> list[str]:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def wait_for_line(path: Path, text: str, seconds: float = 120) -> None:
    """Until the file holds `text` (a deadline for a hung worker, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} never reached {path}"
        time.sleep(0.2)


def test_a_headless_worker_computes_its_groups_job_for_the_address_it_names(
    payer: Person, volunteer: Person, browser: Any, portal_site: LiveSite, tmp_path: Path
) -> None:
    people: Iterator[Person] = volunteer_in(browser, portal_site)
    beneficiary = next(people)  # paid by the headless worker, which is the volunteer's
    token = new_worker_token(volunteer, portal_site)
    key, secret = new_compute_group(payer, portal_site)
    start_worker(volunteer.page, portal_site)  # a public Worker tab, beside the group's worker
    flags = ["--token", token, "--join", f"{key},{secret}", "--leave-public-group"]
    flags += ["--duty-cycle", "0.5"]  # resting as long as it computes: slower, never stopped
    worker = headless_worker(
        portal_site, tmp_path, *flags, "--payment-address", beneficiary.account
    )
    job = GROUP_JOB.format(key=key, secret=secret)
    try:
        result = run_client(portal_site, payer.home, job)
        wait_for_line(tmp_path / "worker.out", "10 slices computed")  # as the page last said
        kill_chromium_of(worker.pid)
        wait_for_line(tmp_path / "worker.log", "restarting it")
        again = run_client(portal_site, payer.home, job)  # only its group's worker computes it
    finally:
        worker.send_signal(signal.SIGINT)
        _, err = worker.communicate(timeout=60)
        next(people, None)  # closes the beneficiary's browser context

    assert result["values"] == again["values"] == [x * x + 1 for x in range(1, 11)]
    assert portal_site.ledger_balance(beneficiary.account) == 20 * 10_000_000
    assert portal_site.ledger_balance(volunteer.account) == 0
    assert figure(volunteer.page, "slices-computed") == "0"  # the public tab got none of it
    assert worker.returncode == 0, err
    out = (tmp_path / "worker.out").read_text()
    assert "stopping (SIGINT): handing in-flight slices back" in out
    # Its totals keep what the page lost with the killed Chromium had earned.
    assert out.strip().splitlines()[-1].startswith("stopped: 20 slices computed, 0.2 credits")
    restart = re.search(r"^.*restarting it.*$", out, re.MULTILINE)
    assert restart and "(the slices it held go back to the scheduler)" in restart[0]
    log = (tmp_path / "worker.log").read_text()
    assert log.count(f"compute groups {key}") == 2  # welcomed again after the restart
    assert "public jobs not taken" in log
