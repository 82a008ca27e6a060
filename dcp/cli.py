"""The `dcp` command: jobs, status, results, cancel, keys, --version.

    dcp jobs                      # your jobs, newest first
    dcp status JOB                # one job's status as JSON
    dcp results JOB --range 1-10  # stored results as JSON
    dcp cancel JOB --reason why   # stop a job, refund its escrow
    dcp keys                      # the DCP home's keystores and their addresses

`--scheduler URL` (or `DCP_SCHEDULER_URL`) picks the portal; `--identity PATH` the identity
keystore (default: `id.keystore` in the DCP home). Errors go to stderr with exit status 1.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import dcp_home, init
from .errors import DCPError
from .keys import ACCOUNT_KEYSTORE, IDENTITY_KEYSTORE, Role, missing_keystore_message

__all__ = ["main"]

ROLES = {IDENTITY_KEYSTORE: "identity", ACCOUNT_KEYSTORE: "account"}
CONNECT_GIVE_UP_S = 5.0  # a command should not hang a minute on a scheduler that is down


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


if __name__ == "__main__":
    main()
