"""A job's `requires`: local code packed into wheels, names resolved with pip into pure-Python
wheels (or Pyodide's own packages), every wheel checked before it is unpacked, and local_exec
importing the same wheels. pip never reaches the internet here: it reads a folder of wheels
built on the fly (PIP_NO_INDEX, PIP_FIND_LINKS)."""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import dcp
from dcp import config
from dcp.client import packages as client_packages
from dcp.client.packages import check_requires, pack_local
from dcp.protocol.messages import Deploy
from dcp.runtime import packages
from dcp.runtime.packages import (
    PYODIDE_LOCK,
    PYODIDE_PATH,
    UnsafeWheel,
    check_wheel,
    install_wheels,
    unpack_wheel,
)
from testkit.livesite import REPO, LiveSite

from .conftest import ACCOUNT_KEY

HELPERS = "def triple(x):\n    return 3 * x\n"
USES_BOTH = """
def work(x):
    import helpers
    import purepkg
    return [helpers.triple(x), purepkg.OFFSET + x, purepkg.__version__]
"""


# --- wheels for the tests ---------------------------------------------------------------------


def wheel_bytes(
    name: str,
    version: str,
    files: dict[str, str | bytes],
    requires: tuple[str, ...] = (),
    tag: str = "py3-none-any",
) -> tuple[str, bytes]:
    """A wheel as pip and the sandbox take it, with dependencies (Requires-Dist)."""
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    purelib = "true" if tag.endswith("none-any") else "false"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content in files.items():
            archive.writestr(path, content)
        archive.writestr(f"{dist_info}/METADATA", metadata)
        archive.writestr(
            f"{dist_info}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n"
        )
        archive.writestr(f"{dist_info}/RECORD", "")
    return f"{name}-{version}-{tag}.whl", buffer.getvalue()


def put_wheel(folder: Path, *args: Any, **kwargs: Any) -> Path:
    file, data = wheel_bytes(*args, **kwargs)
    (folder / file).write_bytes(data)
    return folder / file


def purepkg(folder: Path, version: str = "1.2") -> Path:
    files = {"purepkg/__init__.py": f"OFFSET = 100\n__version__ = {version!r}\n"}
    return put_wheel(folder, "purepkg", version, files)


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of wheels that pip uses as its only index, whatever this machine's pip.conf
    says; no resolution is remembered from another test."""
    folder = tmp_path / "index"
    folder.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", os.fspath(folder))
    monkeypatch.setattr(client_packages, "_resolved", {})
    return folder


def resolve(items: Any, supplier: Any = None) -> client_packages.Resolution:
    chosen = supplier or client_packages.LocalEnvironment()
    return client_packages.resolve_requires(check_requires(items), chosen)


# --- the wheel check: what no sandbox unpacks ---------------------------------------------


def archive_with(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> zipfile.ZipFile:
    """A well-formed pure wheel of `evil` 1.0 plus the given entries."""
    _, good = wheel_bytes("evil", "1.0", {"evil/__init__.py": ""})
    buffer = io.BytesIO(good)
    with zipfile.ZipFile(buffer, "a") as archive:
        for entry, content in entries:
            archive.writestr(entry, content)
    return zipfile.ZipFile(io.BytesIO(buffer.getvalue()))


def refusal(archive: zipfile.ZipFile, file: str = "evil-1.0-py3-none-any.whl") -> str:
    with pytest.raises(UnsafeWheel) as raised:
        check_wheel(archive, file)
    return str(raised.value)


@pytest.mark.parametrize(
    "path",
    ["../escaped.py", "evil/../../escaped.py", "/etc/escaped.py", "C:/escaped.py", "evil\\..\\x"],
)
def test_a_wheel_whose_paths_escape_its_directory_is_refused(path: str) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of odd names; the check must refuse them
        archive = archive_with([(path, b"print('owned')")])
    message = refusal(archive)
    assert repr(path) in message and ("could escape" in message or "absolute" in message)


def test_a_symbolic_link_in_a_wheel_is_refused() -> None:
    link = zipfile.ZipInfo("evil/link.py")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    assert "link" in refusal(archive_with([(link, b"/etc/passwd")]))


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("README", "outside the wheel's packages"),
        ("evil-1.0.data/scripts/run", "outside the wheel's packages"),
        ("evil/_speedups.cpython-314-x86_64-linux-gnu.so", "compiled code"),
        ("EVIL/__init__.py", "twice"),
    ],
)
def test_files_outside_its_packages_compiled_code_and_duplicates_are_refused(
    path: str, why: str
) -> None:
    assert why in refusal(archive_with([(path, b"x")]))


def test_a_wheel_built_for_one_machine_is_refused_by_its_name() -> None:
    archive = archive_with([])
    assert "only pure-Python wheels" in refusal(archive, "evil-1.0-cp314-cp314-linux_x86_64.whl")
    assert "must hold one other-1.0.dist-info" in refusal(archive, "other-1.0-py3-none-any.whl")


def test_a_wheel_over_the_size_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packages, "MAX_WHEEL_UNPACKED_BYTES", 1000)
    assert "at most 1000" in refusal(archive_with([("evil/data.bin", b"\0" * 2000)]))


def test_an_archive_whose_directory_lists_too_much_is_refused_before_it_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    file, data = wheel_bytes("evil", "1.0", {f"evil/m{n}.py": "" for n in range(50)})
    monkeypatch.setattr(packages, "MAX_WHEEL_DIRECTORY_BYTES", 1000)
    with pytest.raises(UnsafeWheel, match="at most"):
        unpack_wheel(data, file, tmp_path)
    with pytest.raises(UnsafeWheel, match="not a zip archive"):
        unpack_wheel(b"PK" + os.urandom(100), file, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unpacking_a_malicious_wheel_writes_nothing(tmp_path: Path) -> None:
    _, good = wheel_bytes("evil", "1.0", {"evil/__init__.py": "", "evil/../../../escaped.py": ""})
    target = tmp_path / "job" / "site"
    target.mkdir(parents=True)
    with pytest.raises(UnsafeWheel):
        unpack_wheel(good, "evil-1.0-py3-none-any.whl", target)
    assert list(tmp_path.rglob("*.py")) == []


def test_installing_checks_each_hash_and_puts_the_packages_first_on_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file, data = wheel_bytes("purepkg", "1.2", {"purepkg/__init__.py": "OFFSET = 100\n"})
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(UnsafeWheel, match="does not hash to"):
        install_wheels(tmp_path / "wrong", [(file, "ab" * 32, data)])
    place = install_wheels(tmp_path / "site", [(file, hashlib.sha256(data).hexdigest(), data)])
    assert sys.path[0] == place
    assert (Path(place) / "purepkg" / "__init__.py").read_text() == "OFFSET = 100\n"


PYODIDE = REPO / "worker_static" / "vendor" / "pyodide"
IN_PYODIDE = """
import {{ loadPyodide }} from {loader};
const pyodide = await loadPyodide({{ indexURL: {index} }});
pyodide.FS.mkdirTree("/home/pyodide/runtime");
pyodide.FS.writeFile("/home/pyodide/runtime/dcp_packages.py", {source});
const wheel = Uint8Array.from(atob({wheel}), (c) => c.charCodeAt(0));
pyodide.globals.set("wheel", pyodide.toPy(wheel));
console.log(await pyodide.runPythonAsync(`
import sys
sys.path.insert(0, "/home/pyodide/runtime")
import dcp_packages
data = bytes(wheel)
dcp_packages.install_wheels("/home/pyodide/job", [({file}, {sha256}, data)])
import purepkg
str(purepkg.OFFSET)
`));
"""


@pytest.mark.skipif(
    shutil.which("node") is None or not (PYODIDE / "pyodide.mjs").is_file(),
    reason="needs node and the vendored Pyodide",
)
def test_the_installer_runs_in_pyodide_as_it_does_here() -> None:
    file, data = wheel_bytes("purepkg", "1.2", {"purepkg/__init__.py": "OFFSET = 100\n"})
    script = IN_PYODIDE.format(
        loader=json.dumps(str(PYODIDE / "pyodide.mjs")),
        index=json.dumps(f"{PYODIDE}/"),
        source=json.dumps(Path(packages.__file__).read_text()),
        wheel=json.dumps(base64.b64encode(data).decode()),
        file=repr(file),
        sha256=repr(hashlib.sha256(data).hexdigest()),
    )
    run = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.stdout.strip().splitlines()[-1:] == ["100"], run.stderr[-2000:]


# --- what requires takes ----------------------------------------------------------------------


def test_requires_refuses_a_missing_path_or_a_malformed_requirement_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notapackage").mkdir()
    (tmp_path / "my-helpers.py").write_text(HELPERS)
    job = dcp.compute_for([1], "def work(x):\n    return x\n")
    for item, words in [
        ("./missing.py", "does not exist"),
        ("./notapackage/", "without __init__.py"),
        ("./my-helpers.py", "cannot be imported"),
        ("mpmath>>1", "is not a requirement"),
        ("./dist/tool-1.0-cp314-cp314-linux_x86_64.whl", "does not exist"),
        (42, "takes names and paths"),
    ]:
        with pytest.raises(dcp.DCPError) as raised:
            job.requires(item)
        assert raised.value.code == "EINVALID" and words in raised.value.message, item


def test_local_code_packs_into_the_same_bytes_every_time(tmp_path: Path) -> None:
    package = tmp_path / "mypkg"
    (package / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("from .core import VALUE\n")
    (package / "core.py").write_text("VALUE = 7\n")
    (package / "__pycache__" / "core.cpython-314.pyc").write_bytes(b"cache")
    first = pack_local(check_requires([package])[0])
    os.utime(package / "core.py", (1, 1))  # another date, the same code
    again = pack_local(check_requires([f"{package}/"])[0])
    assert (again.file, again.blob.sha256) == (first.file, first.blob.sha256)
    code = [path for path in first.paths if not path.startswith("dcp_local_mypkg-")]
    assert code == ["mypkg/__init__.py", "mypkg/core.py"]  # no caches
    (package / "core.py").write_text("VALUE = 8\n")
    assert pack_local(check_requires([package])[0]).blob.sha256 != first.blob.sha256


def test_requirements_refuse_packages_set_by_hand() -> None:
    with pytest.raises(dcp.DCPError, match=r"requires=\[\.\.\.\]"):
        dcp.compute_for([1], "def work(x):\n    return x\n", requirements={"packages": []})


def test_a_javascript_job_cannot_require_python_packages(index: Path) -> None:
    job = dcp.compute_for([1], "function work(x) { return x }", language="js")
    with pytest.raises(dcp.DCPError, match="Python work functions"):
        job.requires("purepkg").local_exec()


# --- names, resolved with pip -------------------------------------------------------------


def test_a_name_resolves_to_pure_wheels_and_its_dependencies(index: Path) -> None:
    put_wheel(index, "purepkg", "2.0", {"purepkg/__init__.py": ""}, ("helperdep>=1",))
    put_wheel(index, "helperdep", "1.5", {"helperdep.py": "X = 1\n"})
    resolution = resolve(["purepkg"])
    assert [(wheel.name, wheel.version) for wheel in resolution.wheels] == [
        ("helperdep", "1.5"),
        ("purepkg", "2.0"),
    ]
    listed = resolution.requirements()["packages"]
    assert listed[1]["file"] == "purepkg-2.0-py3-none-any.whl"
    pip_got = (index / listed[1]["file"]).read_bytes()
    assert listed[1]["sha256"] == hashlib.sha256(pip_got).hexdigest()


def test_a_package_with_compiled_wheels_only_is_refused_naming_it(index: Path) -> None:
    put_wheel(index, "fastlib", "1.0", {"fastlib/__init__.py": ""}, tag="cp314-cp314-linux_x86_64")
    put_wheel(index, "usesfast", "1.0", {"usesfast.py": ""}, ("fastlib",))
    for items, needed_by in ((["fastlib"], ""), (["usesfast"], " (needed by usesfast)")):
        with pytest.raises(dcp.DCPError) as raised:
            resolve(items)
        assert raised.value.code == "ECOMPILED"
        assert raised.value.message.startswith(f"fastlib{needed_by} has compiled code")


def test_a_name_the_index_lacks_or_has_only_as_source_is_refused(index: Path) -> None:
    (index / "srconly-1.0.tar.gz").write_bytes(b"not really a source archive")
    put_wheel(index, "needsold", "1.0", {"needsold.py": ""}, ("helperdep<1",))
    put_wheel(index, "helperdep", "1.5", {"helperdep.py": ""})
    with pytest.raises(dcp.DCPError) as raised:
        resolve(["needsold"])
    assert raised.value.code == "ENOPACKAGE"
    assert "no version of helperdep (needed by needsold)" in raised.value.message
    with pytest.raises(dcp.DCPError) as raised:
        resolve(["nosuchpackage"])
    assert raised.value.code == "ENOPACKAGE" and "'nosuchpackage'" in raised.value.message
    with pytest.raises(dcp.DCPError) as raised:
        resolve(["srconly"])
    assert raised.value.code == "ENOWHEEL" and "only source archives" in raised.value.message


# --- Pyodide's own packages, where the portal serves them ---------------------------------


@pytest.fixture
def portal_files(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A web server standing in for the portal's /worker/vendor/pyodide/ (lock and files)."""
    root = tmp_path / "portal"
    folder = root / PYODIDE_PATH.strip("/")
    folder.mkdir(parents=True)
    handler = functools.partial(QuietHandler, directory=os.fspath(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_lock(folder: Path, packages: dict[str, dict[str, Any]], served: list[str]) -> None:
    lock = {"info": {"python": "3.14.2"}, "packages": packages}
    (folder / PYODIDE_LOCK).write_text(json.dumps(lock))
    for name in served:
        (folder / packages[name]["file_name"]).write_bytes(b"wasm wheel")


def lock_entry(name: str, version: str, depends: tuple[str, ...] = ()) -> dict[str, Any]:
    file = f"{name}-{version}-cp314-cp314-pyemscripten_2026_0_wasm32.whl"
    return {"name": name, "version": version, "file_name": file, "depends": list(depends)}


def test_pyodide_packages_the_portal_serves_go_by_name_the_rest_by_wheel(
    index: Path, portal_files: tuple[str, Path]
) -> None:
    url, folder = portal_files
    listed = {
        "fastlib": lock_entry("fastlib", "1.0", depends=("corelib",)),
        "corelib": lock_entry("corelib", "3.0"),
        "purepkg": lock_entry("purepkg", "0.9"),  # listed, but its file is not served
    }
    serve_lock(folder, listed, served=["fastlib", "corelib"])
    put_wheel(index, "fastlib", "1.0", {"fastlib/__init__.py": ""}, tag="cp314-cp314-linux_x86_64")
    put_wheel(index, "usesfast", "1.0", {"usesfast.py": ""}, ("fastlib>=1",))
    purepkg(index)
    resolution = resolve(["fastlib", "usesfast", "purepkg"], client_packages.PortalPyodide(url))
    assert resolution.requirements()["pyodide"] == ["fastlib"]
    assert [wheel.file for wheel in resolution.wheels] == [
        "purepkg-1.2-py3-none-any.whl",
        "usesfast-1.0-py3-none-any.whl",
    ]
    (folder / listed["corelib"]["file_name"]).unlink()  # what fastlib needs is gone
    client_packages._resolved.clear()
    with pytest.raises(dcp.DCPError) as raised:
        resolve(["fastlib"], client_packages.PortalPyodide(url))
    assert raised.value.code == "ECOMPILED"


def test_the_deploy_lists_the_wheels_and_the_pyodide_packages(
    index: Path, portal_files: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, folder = portal_files
    serve_lock(folder, {"fastlib": lock_entry("fastlib", "1.0")}, served=["fastlib"])
    purepkg(index)
    (tmp_path / "helpers.py").write_text(HELPERS)
    monkeypatch.chdir(tmp_path)
    config.init(url)
    job = dcp.compute_for([1, 2], USES_BOTH).requires(["./helpers.py", "purepkg"], "fastlib")
    frame = job.deploy_frame(Decimal("0.001"), ACCOUNT_KEY)
    requirements = Deploy.model_validate(frame).requirements
    assert requirements.pyodide == ["fastlib"]
    assert [package.name for package in requirements.packages] == ["dcp_local_helpers", "purepkg"]
    assert requirements.packages[0].file.startswith("dcp_local_helpers-0+")


def test_the_sandbox_python_is_the_vendored_pyodide_s() -> None:
    lock = REPO / "worker_static" / "vendor" / "pyodide" / PYODIDE_LOCK
    if not lock.is_file():
        pytest.skip("Pyodide is not vendored here (npm ci --prefix frontend; make vendor)")
    python = json.loads(lock.read_text())["info"]["python"]
    assert python.startswith(client_packages.SANDBOX_PYTHON + ".")


# --- local_exec -------------------------------------------------------------------------------


def test_local_exec_imports_a_local_helper_and_a_package_from_a_wheel(
    index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "helpers.py").write_text(HELPERS)
    purepkg(index, "1.2")
    monkeypatch.chdir(tmp_path)
    job = dcp.compute_for([1, 2, 3], USES_BOTH).requires("./helpers.py", "purepkg==1.2")
    results = job.local_exec(cores=2, progress_bar=False)
    assert results.values() == [[3, 101, "1.2"], [6, 102, "1.2"], [9, 103, "1.2"]]


def test_local_exec_takes_a_compiled_dependency_from_this_environment(index: Path) -> None:
    put_wheel(index, "usespydantic", "1.0", {"usespydantic.py": "import pydantic\n"}, ("pydantic",))
    source = "def work(x):\n    import usespydantic, pydantic\n    return pydantic.VERSION\n"
    job = dcp.compute_for([1], source).requires("usespydantic")
    import pydantic

    assert job.local_exec(progress_bar=False).values() == [pydantic.VERSION]


# --- a live portal ------------------------------------------------------------------------


def test_the_client_stores_the_wheels_before_the_deploy_that_names_them(
    portal_site: LiveSite, index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    portal_site.seed(tmp_path / "home", "packages test password 42")
    dcp.init(portal_site.url)
    (tmp_path / "helpers.py").write_text(HELPERS)
    purepkg(index)
    monkeypatch.chdir(tmp_path)
    job = dcp.compute_for([1, 2], USES_BOTH).requires("./helpers.py", "purepkg")
    job.on("accepted", lambda data: job.cancel("the test saw what it needed"))
    with pytest.raises(dcp.DCPError) as raised:
        job.exec("0.001")
    assert raised.value.code == "ECANCELLED", str(raised.value)
    (text,) = portal_site.query("SELECT requirements FROM scheduler_job WHERE id = ?", (job.id,))
    stored = json.loads(text[0])["packages"]
    assert [package["name"] for package in stored] == ["dcp_local_helpers", "purepkg"]
    for package in stored:
        owned = "SELECT COUNT(*) FROM store_ownership WHERE stored_object_id = ?"
        assert portal_site.query(owned, (package["sha256"],)) == [(1,)]
