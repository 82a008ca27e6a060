"""`dcp worker`'s flags: bad ones are usage errors (exit status 2), good ones make the page URL."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from click.testing import CliRunner

from dcp.cli import main
from dcp.protocol.limits import MAX_WORKER_JOBS
from dcp.worker import WorkerOptions, headless_url
from dcp.worker.options import check_jobs, check_join, check_min_wage
from dcp.worker.status import Stats, Totals, status_line

ADDRESS = "0x" + "ab" * 20


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--payment-address", "0x1234"], "a payment address is 0x and 40 hex digits"),
        (["--payment-address", "ab" * 21], "a payment address is 0x and 40 hex digits"),
        (["--join", "key-without-secret"], "--join takes KEY,SECRET"),
        (["--cores", "0"], "--cores must be 1 or more"),
        (["--max-hours", "0"], "--max-hours must be more than 0"),
        (["--scheduler", "ftp://example.org"], "the scheduler must be an http(s) URL"),
    ],
)
def test_a_bad_flag_is_a_usage_error_that_says_why(flags: list[str], message: str) -> None:
    outcome = CliRunner().invoke(main, ["worker", *flags])
    assert outcome.exit_code == 2
    assert message in outcome.output


def test_the_page_url_carries_every_option_in_its_fragment_and_the_token_nowhere_else() -> None:
    options = WorkerOptions(
        scheduler="https://portal.example",
        payment_address=ADDRESS,
        token="secret-token",
        cores=3,
        gpu=True,
        join=(("key-1", "s,1"), check_join(" key-2 , s2 ")),
        leave_public_group=True,
    )
    parts = urlsplit(headless_url(options))

    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "https://portal.example/worker/headless.html"
    )
    assert parts.query == ""
    assert parse_qsl(parts.fragment) == [
        ("token", "secret-token"),
        ("paymentAddress", ADDRESS),
        ("cores", "3"),
        ("gpu", "1"),
        ("join", "key-1,s,1"),
        ("join", "key-2,s2"),
        ("leavePublicGroup", "1"),
    ]


def test_a_plain_worker_url_says_only_that_the_gpu_is_off() -> None:
    url = headless_url(WorkerOptions(scheduler="http://127.0.0.1:8000"))
    assert url == "http://127.0.0.1:8000/worker/headless.html#gpu=0"


def test_the_totals_keep_what_a_crashed_page_earned() -> None:
    totals = Totals()
    totals.live = Stats.from_page({"slicesComputed": 4, "creditsEarned": "0.04"})
    totals.page_lost("restarting")
    totals.live = Stats.from_page(
        {"slicesComputed": 2, "creditsEarned": "0.02", "inFlight": 1, "state": "computing"}
        | {"jobs": ["j1"]}
    )
    assert status_line(totals) == (
        "computing: 6 slices computed, 0.06 credits earned, 1 in flight, jobs: j1"
    )


JOB = "0123456789abcdef" * 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--job", "not-a-job"], "a job id is 32 lowercase hex digits, not 'not-a-job'"),
        (["--job", JOB.upper()], "a job id is 32 lowercase hex digits"),
        (["--duty-cycle", "0.05"], "--duty-cycle is a fraction from 0.1 to 1"),
        (["--duty-cycle", "1.5"], "--duty-cycle is a fraction from 0.1 to 1"),
        (["--duty-cycle", "nan"], "--duty-cycle is a fraction from 0.1 to 1"),
        (["--min-wage", "-1"], "--min-wage must be 0 or more credits per CPU-second"),
        (["--min-wage", "lots"], "--min-wage is credits per CPU-second"),
    ],
)
def test_a_bad_job_or_duty_cycle_is_a_usage_error_that_says_why(
    flags: list[str], message: str
) -> None:
    outcome = CliRunner().invoke(main, ["worker", *flags])
    assert outcome.exit_code == 2
    assert message in outcome.output


def test_more_jobs_than_a_hello_carries_are_refused_and_repeats_are_dropped() -> None:
    many = tuple(f"{n:032x}" for n in range(MAX_WORKER_JOBS + 1))
    with pytest.raises(ValueError, match=f"at most {MAX_WORKER_JOBS} jobs"):
        check_jobs(many)
    assert check_jobs((f" {JOB} ", JOB)) == (JOB,)


def test_the_page_url_carries_the_jobs_and_the_duty_cycle() -> None:
    other = "f" * 32
    options = WorkerOptions(
        scheduler="http://127.0.0.1:8000",
        jobs=(JOB, other),
        duty_cycle=0.5,
        min_wage=check_min_wage("0.00250"),
    )
    assert parse_qsl(urlsplit(headless_url(options)).fragment) == [
        ("gpu", "0"),
        ("job", JOB),
        ("job", other),
        ("dutyCycle", "0.5"),
        ("minWage", "0.0025"),
    ]
