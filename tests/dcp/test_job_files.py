"""A job's files (`job.fs`): a directory or zip archive packed by the client, checked as a
sandbox checks it, stored with the deploy, and unpacked read-only as the work function's
current directory: by local_exec here, and by Pyodide as the browser sandbox runs it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

import dcp
from dcp.client.files import pack_job_files
from dcp.runtime import packages
from dcp.runtime.packages import UnsafeJobFiles, unpack_job_files
from testkit.livesite import REPO, LiveSite

PYODIDE = REPO / "worker_static" / "vendor" / "pyodide"

READS_ITS_FILES = """
def work(n):
    import os
    numbers = [int(x) for x in open("tables/a.csv").read().split(",")]
    modes = sorted({oct(os.stat(name).st_mode & 0o777) for name in ("tables/a.csv", "tables")})
    return [n * sum(numbers), open("notes.txt").read(), modes]
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    (folder / "tables").mkdir(parents=True)
    (folder / "tables" / "a.csv").write_text("1,2,3")
    (folder / "notes.txt").write_text("read me")
    return folder


def archive_of(entries: dict[str, bytes], link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if link:
            entry = zipfile.ZipInfo(link)
            entry.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(entry, "/etc/passwd")
    return buffer.getvalue()


def test_local_exec_runs_the_work_function_in_its_read_only_files(files: Path) -> None:
    job = dcp.compute_for([1, 2], READS_ITS_FILES, fs=files)
    results = list(job.local_exec())
    assert results == [[6, "read me", ["0o444", "0o555"]], [12, "read me", ["0o444", "0o555"]]]
    assert job.fs == str(files)


def test_the_same_files_pack_into_the_same_archive(files: Path, tmp_path: Path) -> None:
    first = pack_job_files(files)
    os.utime(files / "notes.txt", (0, 0))  # a file's date is not part of the archive
    assert pack_job_files(files).blob.sha256 == first.blob.sha256
    zipped = tmp_path / "data.zip"
    zipped.write_bytes(first.blob.read())
    assert pack_job_files(zipped).requirement() == first.requirement()


def test_what_is_not_a_directory_or_a_zip_archive_is_refused_at_once(
    files: Path, tmp_path: Path
) -> None:
    for source in (tmp_path / "missing", files / "notes.txt"):
        with pytest.raises(dcp.DCPError, match="neither a directory nor a zip archive") as raised:
            dcp.compute_for([1], READS_ITS_FILES, fs=source)
        assert raised.value.code == "EINVALID"
    (files / "link").symlink_to(files / "notes.txt")
    with pytest.raises(dcp.DCPError, match="symbolic link"):
        dcp.compute_for([1], READS_ITS_FILES, fs=files)


@pytest.mark.parametrize(
    ("entries", "link", "words"),
    [
        ({"../escaped.txt": b"x"}, None, "could escape"),
        ({"/etc/cron.d/job": b"x"}, None, "absolute path"),
        ({"ok.txt": b"x"}, "link", "a link or a special file"),
    ],
)
def test_an_archive_a_sandbox_would_refuse_is_refused_and_unpacks_nothing(
    tmp_path: Path, entries: dict[str, bytes], link: str | None, words: str
) -> None:
    data = archive_of(entries, link)
    zipped = tmp_path / "files.zip"
    zipped.write_bytes(data)
    with pytest.raises(dcp.DCPError, match=words) as raised:
        dcp.compute_for([1], READS_ITS_FILES, fs=zipped)
    assert raised.value.code == "EUNSAFEFILES"
    target = tmp_path / "unpacked"
    with pytest.raises(UnsafeJobFiles, match=words):
        unpack_job_files(target, data, hashlib.sha256(data).hexdigest())
    assert not any(target.iterdir()) and not (tmp_path / "escaped.txt").exists()


def test_files_that_are_not_the_jobs_are_refused(tmp_path: Path) -> None:
    data = archive_of({"a.txt": b"x"})
    with pytest.raises(UnsafeJobFiles, match="do not hash to"):
        unpack_job_files(tmp_path / "unpacked", data, hashlib.sha256(b"other").hexdigest())


def test_a_javascript_job_has_no_files(files: Path) -> None:
    job = dcp.compute_for([1], "function work(x) { return x }", language="js", fs=files)
    with pytest.raises(dcp.DCPError, match=r"job\.fs is for Python work functions"):
        job.local_exec()


IN_PYODIDE = """
import {{ loadPyodide }} from {loader};
const pyodide = await loadPyodide({{ indexURL: {index} }});
pyodide.FS.mkdirTree("/home/pyodide/runtime");
pyodide.FS.writeFile("/home/pyodide/runtime/dcp_packages.py", {source});
pyodide.globals.set("data", pyodide.toPy(Uint8Array.from(atob({archive}), (c) => c.charCodeAt(0))));
console.log(await pyodide.runPythonAsync(`
import json, os, sys
sys.path.insert(0, "/home/pyodide/runtime")
import dcp_packages
dcp_packages.mount_job_files("/home/pyodide/job", bytes(data), {sha256})
refused = []
for attempt in (lambda: open("notes.txt", "w"), lambda: open("new.txt", "w"),
                lambda: os.remove("notes.txt")):
    try:
        attempt()
    except OSError as error:
        refused.append(type(error).__name__)
json.dumps([os.getcwd(), open("tables/a.csv").read(), refused])
`));
"""


@pytest.mark.skipif(
    shutil.which("node") is None or not (PYODIDE / "pyodide.mjs").is_file(),
    reason="needs node and the vendored Pyodide",
)
def test_in_pyodide_the_files_are_the_current_directory_and_cannot_be_changed(
    files: Path,
) -> None:
    archive = pack_job_files(files).blob.read()
    script = IN_PYODIDE.format(
        loader=json.dumps(str(PYODIDE / "pyodide.mjs")),
        index=json.dumps(f"{PYODIDE}/"),
        source=json.dumps(Path(packages.__file__).read_text()),
        archive=json.dumps(base64.b64encode(archive).decode()),
        sha256=repr(hashlib.sha256(archive).hexdigest()),
    )
    run = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    answer = json.loads(run.stdout.strip().splitlines()[-1]) if run.stdout.strip() else None
    assert answer == ["/home/pyodide/job", "1,2,3", ["PermissionError"] * 3], run.stderr[-2000:]


def test_the_client_stores_the_files_before_the_deploy_that_names_them(
    portal_site: LiveSite, files: Path, tmp_path: Path
) -> None:
    portal_site.seed(tmp_path / "home", "job files test password 42")
    dcp.init(portal_site.url)
    job = dcp.compute_for([1, 2], READS_ITS_FILES, fs=files)
    job.on("accepted", lambda data: job.cancel("the test saw what it needed"))
    with pytest.raises(dcp.DCPError) as raised:
        job.exec("0.001")
    assert raised.value.code == "ECANCELLED", str(raised.value)
    (text,) = portal_site.query("SELECT requirements FROM scheduler_job WHERE id = ?", (job.id,))
    assert json.loads(text[0])["fs"] == pack_job_files(files).requirement()
    owned = "SELECT COUNT(*) FROM store_ownership WHERE stored_object_id = ?"
    assert portal_site.query(owned, (pack_job_files(files).blob.sha256,)) == [(1,)]
