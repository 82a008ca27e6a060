"""What a headless worker is asked to do, checked, and the page URL that says it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from dcp.protocol.credits import AmountError, format_credits, parse_credits, to_units
from dcp.protocol.ids import check_job_id
from dcp.protocol.limits import MAX_WORKER_JOBS

ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
HEADLESS_PAGE = "/worker/headless.html"
MIN_DUTY_CYCLE = 0.1  # the least share of the time --duty-cycle lets a worker compute


@dataclass(frozen=True)
class WorkerOptions:
    """The flags of `dcp worker`, checked (see the checks below)."""

    scheduler: str
    payment_address: str = ""
    token: str = ""
    cores: int | None = None
    gpu: bool = False
    join: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    leave_public_group: bool = False
    jobs: tuple[str, ...] = ()
    duty_cycle: float = 1.0
    min_wage: str = ""  # credits per CPU-second, as the protocol writes credits ("": any job)
    max_hours: float | None = None
    log_file: str | None = None
    session_cookie: str = ""  # NAME=VALUE of a signed-in session (tests, embedding)


def check_scheduler(url: str) -> str:
    """The portal's base URL without a trailing slash; http(s) only."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"the scheduler must be an http(s) URL, not {url!r}")
    return url.rstrip("/")


def check_payment_address(address: str) -> str:
    if not ADDRESS.fullmatch(address):
        raise ValueError(f"a payment address is 0x and 40 hex digits, not {address!r}")
    return address


def check_join(text: str) -> tuple[str, str]:
    """KEY,SECRET (a compute group's join key and secret) as a pair."""
    key, comma, secret = text.partition(",")
    if not comma or not key.strip() or not secret.strip():
        raise ValueError(f"--join takes KEY,SECRET (from the group's page), not {text!r}")
    return key.strip(), secret.strip()


def check_cores(cores: int) -> int:
    if cores < 1:
        raise ValueError(f"--cores must be 1 or more, not {cores}")
    return cores


def check_jobs(texts: tuple[str, ...]) -> tuple[str, ...]:
    """The --job ids in the protocol's form, each once, no more than a hello may carry."""
    jobs = tuple(dict.fromkeys(check_job_id(text.strip()) for text in texts))
    if len(jobs) > MAX_WORKER_JOBS:
        raise ValueError(f"--job may name at most {MAX_WORKER_JOBS} jobs, not {len(jobs)}")
    return jobs


def check_duty_cycle(fraction: float) -> float:
    if not MIN_DUTY_CYCLE <= fraction <= 1:
        raise ValueError(
            f"--duty-cycle is a fraction from {MIN_DUTY_CYCLE} to 1 (of the time the cores "
            f"compute), not {fraction}"
        )
    return fraction


def check_min_wage(wage: str | None) -> str:
    """The least credits per CPU-second worth working for, in the protocol's credit form."""
    if wage is None or wage == "":
        return ""
    try:
        value = parse_credits(wage)
    except AmountError as error:
        raise ValueError(f"--min-wage is credits per CPU-second: {error}") from None
    if value < 0:
        raise ValueError(f"--min-wage must be 0 or more credits per CPU-second, not {wage}")
    return format_credits(to_units(value))


def check_max_hours(hours: float) -> float:
    if hours <= 0:
        raise ValueError(f"--max-hours must be more than 0, not {hours}")
    return hours


def headless_url(options: WorkerOptions) -> str:
    """The headless worker page with the options in its fragment: a fragment never reaches the
    server, so the token stays out of its logs."""
    fragment: list[tuple[str, str]] = []
    if options.token:
        fragment.append(("token", options.token))
    if options.payment_address:
        fragment.append(("paymentAddress", options.payment_address))
    if options.cores is not None:
        fragment.append(("cores", str(options.cores)))
    fragment.append(("gpu", "1" if options.gpu else "0"))
    fragment += [("join", f"{key},{secret}") for key, secret in options.join]
    if options.leave_public_group:
        fragment.append(("leavePublicGroup", "1"))
    fragment += [("job", job) for job in options.jobs]
    if options.duty_cycle != 1:
        fragment.append(("dutyCycle", str(options.duty_cycle)))
    if options.min_wage:
        fragment.append(("minWage", options.min_wage))
    return f"{options.scheduler}{HEADLESS_PAGE}#{urlencode(fragment)}"
