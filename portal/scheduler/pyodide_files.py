"""The Pyodide files this portal serves at PYODIDE_PATH (/worker/vendor/pyodide/), and so the
Pyodide packages it offers (docs/packages.md, "For operators").

Two folders make them: Pyodide's core, from the npm package (under WORKER_STATIC_DIR), and,
when the setting PYODIDE_PACKAGES_DIR names one, the operator's package repository: a folder
with a `pyodide-lock.json` for the same Pyodide (its `info` the core's) and the package files
that lock file names. A file of the repository is served instead of the core's file of that
name, its lock file first: so the sandboxes' `loadPackage`, the clients' `requires` and the
scheduler's checks all read one lock file, and a package is offered when its file (and its
dependencies' files) are served.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from django.conf import settings

from dcp.runtime.packages import PYODIDE_LOCK, PYODIDE_PATH, PyodideIndex

# Pyodide's files sit side by side in one folder: a name is one path segment.
FILE_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def core_folder() -> Path:
    """Where the npm package's Pyodide (the interpreter, the standard library, the core lock)
    is copied by the build."""
    return Path(settings.WORKER_STATIC_DIR) / PYODIDE_PATH.removeprefix("/worker/")


def packages_folder() -> Path | None:
    """The operator's Pyodide package repository (PYODIDE_PACKAGES_DIR), if one is set."""
    folder = getattr(settings, "PYODIDE_PACKAGES_DIR", "")
    return Path(folder) if folder else None


def pyodide_file(name: str) -> Path | None:
    """The file served as PYODIDE_PATH + `name`: the repository's, else the core's; None when
    neither folder has it (or `name` is not a plain file name)."""
    if not FILE_NAME.fullmatch(name) or name.startswith("."):
        return None
    for folder in (packages_folder(), core_folder()):
        if folder is not None and (folder / name).is_file():
            return folder / name
    return None


def read_lock(folder: Path) -> dict[str, Any]:
    lock = json.loads((folder / PYODIDE_LOCK).read_text())
    if not isinstance(lock, dict):
        raise ValueError(f"{folder / PYODIDE_LOCK} is not a JSON object")
    return lock


def pyodide_index() -> PyodideIndex:
    """The Pyodide packages this portal offers: the served lock file's, whose files it serves."""
    lock_file = pyodide_file(PYODIDE_LOCK)
    lock = read_lock(lock_file.parent) if lock_file is not None else {}
    return PyodideIndex(lock, lambda name: pyodide_file(name) is not None)


def packages_folder_problem() -> str | None:
    """Why PYODIDE_PACKAGES_DIR cannot be served, or None: it must be a folder with a lock file
    made for the core's Pyodide (the same `info`: Python, platform, ABI)."""
    folder = packages_folder()
    if folder is None:
        return None
    setting = f"PYODIDE_PACKAGES_DIR ({folder})"
    if not (folder / PYODIDE_LOCK).is_file():
        return f"{setting} has no {PYODIDE_LOCK}: it must be a Pyodide package repository"
    try:
        info = read_lock(folder).get("info")
    except ValueError as error:
        return f"{setting}: {PYODIDE_LOCK} cannot be read: {error}"
    core_lock = core_folder() / PYODIDE_LOCK
    if not core_lock.is_file():
        return None  # no core yet (the frontend is not built): nothing to compare with
    core_info = read_lock(core_folder()).get("info")
    if info != core_info:
        return (
            f"{setting}: its {PYODIDE_LOCK} is for another Pyodide ({info}); the portal serves "
            f"{core_info}: use the package set of the same Pyodide version"
        )
    return None
