from typing import Any

from django.apps import AppConfig
from django.core import checks


class SchedulerConfig(AppConfig):
    name = "portal.scheduler"
    label = "scheduler"

    def ready(self) -> None:
        checks.register(check_pyodide_packages)
        checks.register(check_commission)


def check_commission(**_: Any) -> list[checks.CheckMessage]:
    """SCHEDULER_COMMISSION_PERCENT must be a percentage, checked when the portal starts (not
    on the first paid result)."""
    from decimal import Decimal, InvalidOperation

    from django.conf import settings

    text = str(settings.SCHEDULER_COMMISSION_PERCENT)
    try:
        if 0 <= Decimal(text) <= 100:
            return []
    except InvalidOperation:
        pass
    return [
        checks.Error(
            f"SCHEDULER_COMMISSION_PERCENT is {text!r}: it must be a number from 0 to 100",
            id="scheduler.E002",
        )
    ]


def check_pyodide_packages(**_: Any) -> list[checks.CheckMessage]:
    """A PYODIDE_PACKAGES_DIR the sandboxes could not use fails when the portal starts; one
    that holds no packages yet is worth a warning."""
    from django.conf import settings

    from .pyodide_files import packages_folder_empty, packages_folder_problem

    problem = packages_folder_problem()
    if problem:
        return [checks.Error(problem, id="scheduler.E001")]
    if packages_folder_empty():
        return [
            checks.Warning(
                f"PYODIDE_PACKAGES_DIR ({settings.PYODIDE_PACKAGES_DIR}) has no "
                "pyodide-lock.json yet: the portal serves Pyodide's core alone until "
                "`manage.py pyodide_packages WHEEL...` adds packages to it",
                id="scheduler.W001",
            )
        ]
    return []
