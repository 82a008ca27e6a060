from typing import Any

from django.apps import AppConfig
from django.core import checks


class SchedulerConfig(AppConfig):
    name = "portal.scheduler"
    label = "scheduler"

    def ready(self) -> None:
        checks.register(check_pyodide_packages)


def check_pyodide_packages(**_: Any) -> list[checks.CheckMessage]:
    """A PYODIDE_PACKAGES_DIR the sandboxes could not use fails when the portal starts."""
    from .pyodide_files import packages_folder_problem

    problem = packages_folder_problem()
    return [checks.Error(problem, id="scheduler.E001")] if problem else []
