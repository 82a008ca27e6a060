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
import shutil
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


def packages_folder_empty() -> bool:
    """Whether PYODIDE_PACKAGES_DIR is set to a folder without a lock file (yet)."""
    folder = packages_folder()
    return folder is not None and not (folder / PYODIDE_LOCK).is_file()


def packages_folder_problem() -> str | None:
    """Why PYODIDE_PACKAGES_DIR cannot be served, or None: its lock file must be made for the
    core's Pyodide (the same `info`: Python, platform, ABI). A folder without a lock file yet
    serves nothing (pyodide_packages_missing)."""
    folder = packages_folder()
    if folder is None or not (folder / PYODIDE_LOCK).is_file():
        return None
    setting = f"PYODIDE_PACKAGES_DIR ({folder})"
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


def add_packages(wheels: list[Path]) -> list[str]:
    """Add `wheels` (built for this Pyodide, pure or compiled) to the PYODIDE_PACKAGES_DIR
    repository with pyodide-lock: each is copied in and entered in its lock file, which starts
    as the core's. Returns the names added; ValueError says why a wheel was refused."""
    from pyodide_lock import PyodideLockSpec
    from pyodide_lock.utils import add_wheels_to_spec

    folder = packages_folder()
    if folder is None:
        raise ValueError("set PYODIDE_PACKAGES_DIR to the folder of the Pyodide package repository")
    problem = packages_folder_problem()
    if problem:
        raise ValueError(problem)
    folder.mkdir(parents=True, exist_ok=True)
    lock_file = folder / PYODIDE_LOCK
    start = lock_file if lock_file.is_file() else core_folder() / PYODIDE_LOCK
    spec = PyodideLockSpec.from_json(start)
    for wheel in wheels:
        if wheel.suffix != ".whl" or not wheel.is_file():
            raise ValueError(f"{wheel} is not a wheel file")
    copies = [folder / wheel.name for wheel in wheels]
    fresh = [copy for copy in copies if not copy.exists()]
    for wheel, copy in zip(wheels, copies, strict=True):
        if wheel.resolve() != copy.resolve():
            shutil.copyfile(wheel, copy)
    try:
        spec = add_wheels_to_spec(spec, copies, base_path=folder)
    except Exception as error:  # pyodide-lock raises whatever it meets in a wheel
        for copy in fresh:
            copy.unlink()
        raise ValueError(f"the wheels cannot be added: {error}") from error
    spec.to_json(lock_file)
    added = {copy.name for copy in copies}
    return sorted(package.name for package in spec.packages.values() if package.file_name in added)
