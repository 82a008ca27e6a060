"""The `dcp` command: `dcp keys` lists the keystores of the DCP home; `dcp --version`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .config import dcp_home
from .keys import ACCOUNT_KEYSTORE, IDENTITY_KEYSTORE, Role, missing_keystore_message
from .keystore import KeystoreError, keystore_address, load_keystore_file

__all__ = ["build_parser", "main"]

ROLES = {IDENTITY_KEYSTORE: "identity", ACCOUNT_KEYSTORE: "account"}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `dcp` and its subcommands."""
    parser = argparse.ArgumentParser(prog="dcp", description="DCP Portal client.")
    parser.add_argument("--version", action="version", version=f"dcp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    keys = commands.add_parser("keys", help="show the DCP home's keystores and addresses")
    keys.set_defaults(handler=run_keys)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `dcp` command; returns the exit status."""
    parser = build_parser()
    options = parser.parse_args(argv)
    handler = getattr(options, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    status: int = handler(options)
    return status


def run_keys(options: argparse.Namespace) -> int:
    """Print every keystore in the DCP home with its address, without asking passphrases."""
    home = dcp_home()
    files = sorted(home.glob("*.keystore")) if home.is_dir() else []
    for file in files:
        print(f"{ROLES.get(file.name, '-'):9} {_address(file):42}  {file}")
    missing = [name for name in ROLES if not (home / name).is_file()]
    for name in missing:
        role: Role = "identity" if name == IDENTITY_KEYSTORE else "account"
        print(missing_keystore_message(home / name, role), file=sys.stderr)
    return 1 if missing else 0


def _address(file: Path) -> str:
    try:
        return keystore_address(load_keystore_file(file))
    except KeystoreError as exc:
        return f"(unreadable: {exc})"


if __name__ == "__main__":
    sys.exit(main())
