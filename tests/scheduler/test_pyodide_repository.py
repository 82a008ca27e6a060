"""An operator's Pyodide package repository (PYODIDE_PACKAGES_DIR): built with
`manage.py pyodide_packages`, served over the core at /worker/vendor/pyodide/, and what the
scheduler accepts as a job's Pyodide packages."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from dcp.runtime.packages import PYODIDE_LOCK, PYODIDE_PATH
from portal.scheduler.apps import check_pyodide_packages
from portal.scheduler.pyodide_files import pyodide_index
from testkit.wheels import make_wheel

CORE_INFO = {
    "abi_version": "2026_0",
    "arch": "wasm32",
    "platform": "emscripten_5_0_3",
    "python": "3.14.2",
}


@pytest.fixture
def core(settings: Any, tmp_path: Path) -> Path:
    """The portal's core Pyodide: a lock file that lists no package files, and the interpreter."""
    settings.WORKER_STATIC_DIR = tmp_path / "worker_static"
    folder = Path(settings.WORKER_STATIC_DIR) / PYODIDE_PATH.removeprefix("/worker/")
    folder.mkdir(parents=True)
    (folder / PYODIDE_LOCK).write_text(json.dumps({"info": CORE_INFO, "packages": {}}))
    (folder / "pyodide.asm.wasm").write_bytes(b"\0asm the interpreter")
    return folder


@pytest.fixture
def repository(settings: Any, tmp_path: Path, core: Path) -> Path:
    settings.PYODIDE_PACKAGES_DIR = str(tmp_path / "pyodide-packages")
    return Path(settings.PYODIDE_PACKAGES_DIR)


def toy_wheel(folder: Path, name: str = "toypkg") -> Path:
    file, data = make_wheel(name, "1.0", {f"{name}/__init__.py": "ANSWER = 42\n"})
    path = folder / file
    path.write_bytes(data)
    return path


def test_added_wheels_are_offered_served_and_listed_in_the_served_lock_file(
    repository: Path, tmp_path: Path, client: Client
) -> None:
    wheel = toy_wheel(tmp_path)
    call_command("pyodide_packages", str(wheel))

    lock = json.loads(client.get(f"{PYODIDE_PATH}{PYODIDE_LOCK}").getvalue())
    entry = lock["packages"]["toypkg"]
    assert lock["info"] == CORE_INFO
    assert entry["file_name"] == wheel.name and entry["imports"] == ["toypkg"]
    assert entry["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert client.get(f"{PYODIDE_PATH}{wheel.name}").getvalue() == wheel.read_bytes()
    assert client.get(f"{PYODIDE_PATH}pyodide.asm.wasm").getvalue() == b"\0asm the interpreter"
    assert pyodide_index().find("ToyPkg") is not None and check_pyodide_packages() == []


def test_without_the_setting_the_core_is_served_and_offers_nothing(
    core: Path, client: Client
) -> None:
    lock = json.loads(client.get(f"{PYODIDE_PATH}{PYODIDE_LOCK}").getvalue())
    assert lock["packages"] == {} and pyodide_index().find("toypkg") is None
    with pytest.raises(CommandError, match="set PYODIDE_PACKAGES_DIR"):
        call_command("pyodide_packages", str(toy_wheel(core)))


@pytest.mark.parametrize("path", ["..%2F..%2Fsettings.py", ".hidden", "sub/dir.whl"])
def test_only_plain_files_of_the_folders_are_served(
    repository: Path, client: Client, path: str
) -> None:
    missing = client.get(f"{PYODIDE_PATH}{path}")
    assert missing.status_code == 404 and missing["Access-Control-Allow-Origin"] == "*"


def test_a_repository_for_another_pyodide_fails_the_start_and_an_empty_one_warns(
    repository: Path, tmp_path: Path
) -> None:
    repository.mkdir()
    [empty] = check_pyodide_packages()
    assert empty.id == "scheduler.W001" and "has no pyodide-lock.json yet" in empty.msg
    other = {**CORE_INFO, "python": "3.12.7"}
    (repository / PYODIDE_LOCK).write_text(json.dumps({"info": other, "packages": {}}))
    problems = check_pyodide_packages()
    assert [problem.id for problem in problems] == ["scheduler.E001"]
    assert "another Pyodide" in problems[0].msg and "3.12.7" in problems[0].msg
    with pytest.raises(CommandError, match="another Pyodide"):
        call_command("pyodide_packages", str(toy_wheel(tmp_path)))


def test_a_file_that_is_not_a_wheel_is_refused_and_nothing_is_added(
    repository: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-1.0-py3-none-any.whl"
    broken.write_bytes(b"not a zip archive")
    with pytest.raises(CommandError, match="cannot be added"):
        call_command("pyodide_packages", str(broken))
    assert pyodide_index().find("broken") is None and not (repository / broken.name).exists()
    with pytest.raises(CommandError, match="is not a wheel file"):
        call_command("pyodide_packages", str(tmp_path / "missing.whl"))
