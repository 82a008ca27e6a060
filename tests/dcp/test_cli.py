"""The `dcp` command, run with click's CliRunner against the fake scheduler."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import dcp
from dcp.cli import main
from dcp.keys.keystore import address_of
from dcp.protocol.signed import batch_cheque_text, recover_signer

from .conftest import ACCOUNT_KEY, IDENTITY_KEY

pytestmark: list[pytest.MarkDecorator] = []


def work(x):
    return x * 2


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def deployed(scheduler, keystores) -> str:
    """A finished job of ten slices on the fake scheduler; returns its id."""
    job = dcp.compute_for(1, 10, work)
    job.public = {"name": "doubling"}
    job.exec()
    assert job.id is not None
    return job.id


def run(runner: CliRunner, scheduler, *args: str):
    return runner.invoke(main, ["--scheduler", scheduler.url, *args])


def test_keys_lists_addresses_without_asking_passphrases(runner, keystores, monkeypatch):
    monkeypatch.setattr("getpass.getpass", pytest.fail)
    result = runner.invoke(main, ["keys"])
    assert result.exit_code == 0
    assert f"account   {address_of(ACCOUNT_KEY)}" in result.stdout
    assert f"identity  {address_of(IDENTITY_KEY)}" in result.stdout


def test_keys_says_what_is_missing_and_where_to_get_it(runner):
    result = runner.invoke(main, ["keys"])
    assert result.exit_code == 1
    assert "no identity keystore at" in result.stderr
    assert "/portal/first-devs/" in result.stderr
    assert "/portal/accounts/" in result.stderr


def test_version_prints_the_package_version(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"dcp {dcp.__version__}"


def test_no_command_prints_help(runner):
    result = runner.invoke(main, [])
    for command in ("jobs", "status", "results", "cancel", "escrow", "keys"):
        assert command in result.output


def test_jobs_lists_jobs_as_a_table_or_json(runner, scheduler, deployed):
    table = run(runner, scheduler, "jobs")
    assert table.exit_code == 0, table.output
    assert deployed in table.stdout and "doubling" in table.stdout and "10/10" in table.stdout
    listed = json.loads(run(runner, scheduler, "jobs", "--json").stdout)
    assert listed[0]["job"] == deployed


def test_status_prints_the_jobs_status_as_json(runner, scheduler, deployed):
    result = run(runner, scheduler, "status", deployed)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["status"] == "finished"


def test_results_prints_json_for_all_or_a_range_of_slices(runner, scheduler, deployed):
    every = json.loads(run(runner, scheduler, "results", deployed).stdout)
    assert [row["value"] for row in every] == [2 * n for n in range(1, 11)]
    part = json.loads(run(runner, scheduler, "results", deployed, "--range", "2-3,9").stdout)
    assert part == [{"slice": 2, "value": 4}, {"slice": 3, "value": 6}, {"slice": 9, "value": 18}]


def test_cancel_sends_the_reason(runner, scheduler, deployed):
    result = run(runner, scheduler, "cancel", deployed, "--reason", "enough")
    assert result.exit_code == 0
    assert f"cancelled {deployed}" in result.stdout
    assert scheduler.requests("cancel")[-1]["reason"] == "enough"


def test_an_unknown_job_is_a_clear_error(runner, scheduler, keystores):
    result = run(runner, scheduler, "status", "job-404")
    assert result.exit_code == 1
    assert "ENOJOB: no such job" in result.stderr
    bad = run(runner, scheduler, "results", "job-404", "--range", "x")
    assert bad.exit_code == 1 and "not a span of slices" in bad.stderr


def test_a_missing_keystore_is_a_clear_error(runner, scheduler):
    result = run(runner, scheduler, "jobs")
    assert result.exit_code == 1
    assert "ENOKEYSTORE: no identity keystore at" in result.stderr
    assert result.stdout == ""


def test_an_unreachable_scheduler_is_a_clear_error(runner, keystores, monkeypatch):
    monkeypatch.setattr("dcp.cli.CONNECT_GIVE_UP_S", 0.5)
    result = runner.invoke(main, ["--scheduler", "http://127.0.0.1:9", "jobs"])
    assert result.exit_code == 1
    assert "ENOCONNECTION: cannot reach the scheduler" in result.stderr


def test_the_scheduler_comes_from_the_environment(runner, scheduler, deployed, monkeypatch):
    monkeypatch.setenv("DCP_SCHEDULER_URL", scheduler.url)
    assert runner.invoke(main, ["status", deployed]).exit_code == 0


def test_escrow_adds_credits_signed_by_the_account_key(runner, scheduler, deployed):
    result = run(runner, scheduler, "escrow", deployed, "0.5")
    assert result.exit_code == 0, result.output
    assert f"{deployed}: its escrow holds 0.5 credits" in result.stdout
    request = scheduler.requests("escrow")[-1]
    text = batch_cheque_text(deployed, request["ref"], request["payment"]["max_total"])
    assert recover_signer(text, request["payment"]["signature"]) == address_of(ACCOUNT_KEY)
    refused = run(runner, scheduler, "escrow", deployed, "--", "-1")
    assert refused.exit_code != 0 and "credits must be a finite number >= 0" in refused.output
