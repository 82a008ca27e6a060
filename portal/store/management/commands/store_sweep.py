"""`manage.py store_sweep`: delete what uploads that crashed left in the store's folder."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from portal.store.services import STALE_TEMP_AGE, remove_stale_temp_files


class Command(BaseCommand):
    help = "Delete the temporary files of store uploads whose process died."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--hours",
            type=float,
            default=STALE_TEMP_AGE.total_seconds() / 3600,
            help="only files older than this (no upload runs this long)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        removed = remove_stale_temp_files(older_than=timedelta(hours=options["hours"]))
        self.stdout.write(f"{removed} temporary file(s) removed")
