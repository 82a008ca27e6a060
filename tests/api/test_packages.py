"""REST `packages` (dcp-rest's field): Pyodide names and wheels the caller stored, checked by
the scheduler before anything is stored or paid."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from dcp.protocol.credits import to_units
from dcp.runtime.packages import PYODIDE_LOCK, PYODIDE_PATH
from portal.bank.selectors import balance_of
from portal.scheduler.models import Job
from portal.store.services import put_object
from testkit.wheels import make_wheel

from .conftest import Caller, error_of

WORK = {"language": "python", "function": "def work(x):\n    import purepkg\n    return x\n"}


def wheel(name: str, version: str, extra: dict[str, str] | None = None) -> tuple[str, bytes]:
    return make_wheel(name, version, {f"{name}/__init__.py": "OFFSET = 100\n", **(extra or {})})


def package(file: str, data: bytes, **fields: Any) -> dict[str, Any]:
    name, version = file.split("-")[:2]
    listed = {"name": name, "version": version, "file": file}
    return {**listed, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), **fields}


def store(user: Any, data: bytes) -> None:
    sha = hashlib.sha256(data).hexdigest()
    put_object(user=user, sha256=sha, size=len(data), stream=io.BytesIO(data))


def deploy(caller: Caller, packages: list[Any]) -> Any:
    return caller.post("/api/v0/job", {"work": WORK, "slices": [1, 2], "packages": packages})


@pytest.fixture(autouse=True)
def store_dir(settings: Any, tmp_path: Path) -> None:
    settings.STORE_DIR = tmp_path / "store"


@pytest.fixture
def pyodide(settings: Any, tmp_path: Path) -> Path:
    """The portal's Pyodide folder: a lock listing numpy (served) and scipy (file missing)."""
    settings.WORKER_STATIC_DIR = tmp_path / "worker_static"
    folder = Path(settings.WORKER_STATIC_DIR) / PYODIDE_PATH.removeprefix("/worker/")
    folder.mkdir(parents=True)
    entries = {
        name: {"name": name, "version": "2.0", "file_name": f"{name}-2.0-wasm.whl", "depends": []}
        for name in ("numpy", "scipy")
    }
    (folder / PYODIDE_LOCK).write_text(json.dumps({"info": {}, "packages": entries}))
    (folder / "numpy-2.0-wasm.whl").write_bytes(b"wasm")
    return folder


def test_a_stored_wheel_and_a_served_pyodide_package_are_the_jobs_requirements(
    bearer: Caller, first_dev: Any, pyodide: Path
) -> None:
    file, data = wheel("purepkg", "1.2")
    store(first_dev, data)
    response = deploy(bearer, ["numpy", package(file, data)])
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=response.json()["jobId"])
    assert job.requirements == {"packages": [package(file, data)], "pyodide": ["numpy"]}
    details = bearer.get(f"/api/v0/job/{job.id}").json()
    assert details["requirements"]["pyodide"] == ["numpy"]


def test_a_wheel_the_caller_did_not_store_is_refused_naming_it(
    bearer: Caller, account: Any
) -> None:
    file, data = wheel("purepkg", "1.2")
    refusal = error_of(deploy(bearer, [package(file, data)]))
    assert refusal["code"] == "ENOBLOB" and f"package {file}" in refusal["message"]
    assert not Job.objects.exists() and balance_of(account.address) == to_units("10")


@pytest.mark.parametrize(
    ("extra", "code", "words"),
    [
        ({"../../escaped.py": "owned = True"}, "EUNSAFEWHEEL", "could escape"),
        ({"purepkg/_fast.so": "machine code"}, "EUNSAFEWHEEL", "compiled code"),
    ],
)
def test_an_unsafe_wheel_is_refused_before_anything_is_paid(
    bearer: Caller, first_dev: Any, account: Any, extra: dict[str, str], code: str, words: str
) -> None:
    file, data = wheel("purepkg", "1.2", extra)
    store(first_dev, data)
    refusal = error_of(deploy(bearer, [package(file, data)]))
    assert refusal["code"] == code and words in refusal["message"], refusal
    assert not Job.objects.exists() and balance_of(account.address) == to_units("10")


def test_a_wheel_listed_under_another_name_or_version_is_refused(
    bearer: Caller, first_dev: Any
) -> None:
    file, data = wheel("purepkg", "1.2")
    store(first_dev, data)
    refusal = error_of(deploy(bearer, [package(file, data, version="9.9")]))
    assert refusal["code"] == "EINVALID" and "not purepkg 9.9" in refusal["message"]


def test_a_pyodide_package_the_portal_does_not_serve_is_refused(
    bearer: Caller, pyodide: Path
) -> None:
    for name in ("scipy", "nosuchpackage"):
        refusal = error_of(deploy(bearer, [name]))
        assert refusal["code"] == "ENOPACKAGE" and name in refusal["message"]
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "packages",
    [["../numpy"], [{"name": "x", "version": "1", "file": "../x.whl", "sha256": "0", "size": 1}]],
)
def test_malformed_packages_are_400(bearer: Caller, packages: list[Any]) -> None:
    assert error_of(deploy(bearer, packages))["code"] == "EINVALID"


def test_the_same_package_twice_is_400(bearer: Caller, pyodide: Path) -> None:
    refusal = error_of(deploy(bearer, ["numpy", "numpy"]))
    assert refusal["code"] == "EINVALID" and "more than once" in refusal["message"]


def test_a_jobs_files_must_be_the_callers_and_an_archive_a_sandbox_would_mount(
    bearer: Caller, first_dev: Any, account: Any
) -> None:
    escaping = io.BytesIO()
    with zipfile.ZipFile(escaping, "w") as archive:
        archive.writestr("../outside.txt", "x")
    data = escaping.getvalue()
    files = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    body = {"work": WORK, "slices": [1], "requirements": {"fs": files}}

    refusal = error_of(bearer.post("/api/v0/job", body))
    assert refusal["code"] == "ENOBLOB" and "the job's files (job.fs)" in refusal["message"]
    store(first_dev, data)
    refusal = error_of(bearer.post("/api/v0/job", body))
    assert refusal["code"] == "EINVALID" and "could escape" in refusal["message"], refusal
    assert not Job.objects.exists() and balance_of(account.address) == to_units("10")
