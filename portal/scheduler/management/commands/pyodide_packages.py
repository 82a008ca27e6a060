"""`manage.py pyodide_packages WHEEL...`: add wheels built for the portal's Pyodide to the
package repository PYODIDE_PACKAGES_DIR names (docs/packages.md, "For operators")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.scheduler.pyodide_files import add_packages


class Command(BaseCommand):
    help = (
        "Add wheels built for this portal's Pyodide to its Pyodide package repository "
        "(PYODIDE_PACKAGES_DIR): copied in and entered in its pyodide-lock.json."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("wheels", nargs="+", type=Path, help="the .whl files to add")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            added = add_packages(options["wheels"])
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"added to the Pyodide package repository: {', '.join(added)}")
