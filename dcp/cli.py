"""The `dcp` command: jobs, status, results, cancel, keys, --version.

    dcp jobs                      # your jobs, newest first
    dcp status JOB                # one job's status as JSON
    dcp results JOB --range 1-10  # stored results as JSON
    dcp cancel JOB --reason why   # stop a job, refund its escrow
    dcp keys                      # the DCP home's keystores and their addresses
    dcp worker --payment-address 0x…  # compute other people's slices in headless Chromium

`--scheduler URL` (or `DCP_SCHEDULER_URL`) picks the portal; `--identity PATH` the identity
keystore (default: `id.keystore` in the DCP home). Errors go to stderr with exit status 1.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import dcp_home, init, portal_url
from .errors import DCPError
from .keys import ACCOUNT_KEYSTORE, IDENTITY_KEYSTORE, Role, missing_keystore_message
from .worker.options import (
    WorkerOptions,
    check_cores,
    check_duty_cycle,
    check_jobs,
    check_join,
    check_max_hours,
    check_min_wage,
    check_payment_address,
    check_scheduler,
)

__all__ = ["main"]

ROLES = {IDENTITY_KEYSTORE: "identity", ACCOUNT_KEYSTORE: "account"}
CONNECT_GIVE_UP_S = 5.0  # a command should not hang a minute on a scheduler that is down
# For tests, and for embedding `dcp worker` where a signed-in session exists: NAME=VALUE of the
# portal's session cookie, which the worker page then connects with (in place of --token).
SESSION_COOKIE_VARIABLE = "DCP_WORKER_SESSION_COOKIE"


def _reported[F: Callable[..., Any]](command: F) -> F:
    """Turn DCPError into a one-line message on stderr and exit status 1."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DCPError as error:
            raise click.ClickException(str(error)) from None

    return run  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dcp", message="%(prog)s %(version)s")
@click.option(
    "--scheduler",
    envvar="DCP_SCHEDULER_URL",
    metavar="URL",
    help="The portal, e.g. http://127.0.0.1:8000 (default: $DCP_SCHEDULER_URL or that).",
)
@click.option(
    "--identity",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The identity keystore (default: id.keystore in the DCP home).",
)
@click.pass_context
@_reported
def main(ctx: click.Context, scheduler: str | None, identity: Path | None) -> None:
    """DCP Portal client: your jobs, their results, and your keystores."""
    init(scheduler)
    ctx.obj = {"identity": identity}


def _remote(ctx: click.Context) -> Any:
    from .client.remote import Remote  # the network stack only for commands that use it
    from .config import client_socket_url
    from .keys import signing_key

    identity = ctx.obj["identity"] if ctx.obj else None
    return Remote(client_socket_url(), signing_key(identity, "identity"), CONNECT_GIVE_UP_S)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
@_reported
def jobs(ctx: click.Context, as_json: bool) -> None:
    """List your jobs, newest first."""
    listed = _remote(ctx).jobs()
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    if not listed:
        click.echo("no jobs yet")
        return
    click.echo(f"{'JOB':32}  {'STATUS':9}  {'COMPUTED':>17}  {'CREATED':25}  NAME")
    for job in listed:
        done = f"{job.get('computed', 0)}/{job.get('total', 0)}"
        click.echo(
            f"{job.get('job', ''):32}  {job.get('status', ''):9}  {done:>17}  "
            f"{str(job.get('created', ''))[:25]:25}  {job.get('name', '')}"
        )


@main.command()
@click.argument("job")
@click.pass_context
@_reported
def status(ctx: click.Context, job: str) -> None:
    """Print a job's status as JSON."""
    status = _remote(ctx).status(job).status
    click.echo(json.dumps(status.model_dump(exclude_unset=True), indent=2))


@main.command()
@click.argument("job")
@click.option(
    "--range",
    "span",
    metavar="SPAN",
    help="Slices to fetch, e.g. 1-10 or 1-3,7 (default: all).",
)
@click.pass_context
@_reported
def results(ctx: click.Context, job: str, span: str | None) -> None:
    """Print a job's stored results as JSON: [{"slice": n, "value": v}, ...]."""
    from .client.results import parse_slice_numbers

    numbers = parse_slice_numbers(span) if span is not None else None
    remote = _remote(ctx)
    if numbers is None:
        numbers = list(range(1, remote.status(job).status.total + 1))
    wanted = set(numbers)
    entries = remote.fetch(job, min(numbers), max(numbers)) if numbers else []
    rows = [{"slice": n, "value": value} for n, value in entries if n in wanted]
    click.echo(json.dumps(rows))


@main.command()
@click.argument("job")
@click.option("--reason", default="", help="Why (shown with the job).")
@click.pass_context
@_reported
def cancel(ctx: click.Context, job: str, reason: str) -> None:
    """Cancel a job: dispatch stops and its escrow is refunded."""
    _remote(ctx).cancel(job, reason)
    click.echo(f"cancelled {job}")


@main.command()
@click.argument("job")
@click.argument("credits")
@click.option(
    "--account",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The paying account's keystore (default: default.keystore in the DCP home).",
)
@click.pass_context
@_reported
def escrow(ctx: click.Context, job: str, credits: str, account: Path | None) -> None:
    """Add CREDITS to the escrow of a job deployed at market value (a paused job resumes)."""
    from .client.cheques import parse_offer
    from .keys import signing_key

    amount = parse_offer(credits, "credits")
    held = _remote(ctx).escrow(job, amount, account_key=signing_key(account, "account"))
    click.echo(f"{job}: its escrow holds {held} credits")


@main.command()
def keys() -> None:
    """Show the DCP home's keystores and addresses, without asking passphrases."""
    from .keys.keystore import KeystoreError, keystore_address, load_keystore_file

    home = dcp_home()
    files = sorted(home.glob("*.keystore")) if home.is_dir() else []
    for file in files:
        try:
            address = keystore_address(load_keystore_file(file))
        except KeystoreError as exc:
            address = f"(unreadable: {exc})"
        click.echo(f"{ROLES.get(file.name, '-'):9} {address:42}  {file}")
    missing = [name for name in ROLES if not (home / name).is_file()]
    for name in missing:
        role: Role = "identity" if name == IDENTITY_KEYSTORE else "account"
        click.echo(missing_keystore_message(home / name, role), err=True)
    if missing:
        click.get_current_context().exit(1)


@main.command()
@click.option(
    "--scheduler",
    "worker_scheduler",
    metavar="URL",
    help="The portal (default: the one given before `worker`, $DCP_SCHEDULER_URL or local).",
)
@click.option(
    "--payment-address",
    metavar="0x…",
    default="",
    help="The account address paid for results (default: the worker owner's).",
)
@click.option(
    "--token",
    envvar="DCP_WORKER_TOKEN",
    default="",
    help="A worker token from the portal (or $DCP_WORKER_TOKEN).",
)
@click.option("--cores", type=int, help="Slices computed at once (default: CPU threads - 1).")
@click.option("--gpu/--no-gpu", default=False, help="Offer the GPU (WebGPU) to jobs (default: no).")
@click.option(
    "--join",
    "joins",
    multiple=True,
    metavar="KEY,SECRET",
    help="Join a compute group (from its page); repeatable.",
)
@click.option("--leave-public-group", is_flag=True, help="Compute only the joined groups' jobs.")
@click.option(
    "--job",
    "jobs",
    multiple=True,
    metavar="JOB_ID",
    help="Compute only this job (of those the groups allow); repeatable.",
)
@click.option(
    "--duty-cycle",
    type=float,
    default=1.0,
    metavar="FRACTION",
    help="Compute this share of the time, 0.1 to 1 (default: 1, all the time).",
)
@click.option(
    "--min-wage",
    metavar="CREDITS",
    help="Take only jobs that pay at least this many credits per CPU-second (default: any).",
)
@click.option("--max-hours", type=float, metavar="H", help="Stop after H hours.")
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, writable=True),
    help="Append the worker's event log to this file.",
)
@_reported
def worker(
    worker_scheduler: str | None,
    payment_address: str,
    token: str,
    cores: int | None,
    gpu: bool,
    joins: tuple[str, ...],
    leave_public_group: bool,
    jobs: tuple[str, ...],
    duty_cycle: float,
    min_wage: str | None,
    max_hours: float | None,
    log_file: str | None,
) -> None:
    """Compute slices in headless Chromium until Ctrl-C, which hands in-flight slices back.

    Work functions run in the browser's sandboxes, as on the Worker tab, never in this process.
    Needs Debian's chromium and Playwright: pip install 'dcp-portal[worker]'.
    """
    ctx = click.get_current_context()
    scheduler = worker_scheduler or portal_url()
    options = WorkerOptions(
        scheduler=_check(ctx, "worker_scheduler", check_scheduler, scheduler),
        payment_address=_check(ctx, "payment_address", check_payment_address, payment_address),
        token=token,
        cores=_check(ctx, "cores", check_cores, cores),
        gpu=gpu,
        join=tuple(_check(ctx, "joins", check_join, text) for text in joins),
        leave_public_group=leave_public_group,
        jobs=_check(ctx, "jobs", check_jobs, jobs),
        duty_cycle=_check(ctx, "duty_cycle", check_duty_cycle, duty_cycle),
        min_wage=_check(ctx, "min_wage", check_min_wage, min_wage),
        max_hours=_check(ctx, "max_hours", check_max_hours, max_hours),
        log_file=log_file,
        session_cookie=os.environ.get(SESSION_COOKIE_VARIABLE, ""),
    )
    from .worker import WorkerError, run_worker

    try:
        ctx.exit(run_worker(options))
    except WorkerError as error:
        raise click.ClickException(str(error)) from None


def _check(ctx: click.Context, name: str, check: Callable[[Any], Any], value: Any) -> Any:
    """`value` through `check`, a ValueError as a usage error naming the flag (exit status 2)."""
    if value is None or value == "":
        return value
    try:
        return check(value)
    except ValueError as error:
        param = next(p for p in ctx.command.params if p.name == name)
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None


if __name__ == "__main__":
    main()
