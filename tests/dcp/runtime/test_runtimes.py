"""The work-function runtimes table and the runtime files the portal serves to sandboxes."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from dcp.errors import DCPError
from dcp.protocol.limits import MAX_CONSOLE_CHARS
from dcp.protocol.messages import LANGUAGES
from dcp.runtime import runtimes
from dcp.runtime.runtimes import RUNTIME_DIR, RUNTIMES, SANDBOX_MANIFEST, sandbox_file


def test_python_and_javascript_are_registered_runtimes():
    assert set(RUNTIMES) == {"python", "js"}
    assert RUNTIMES["python"].sandbox_files == (
        "slice.py",
        "gpu.py",
        "wgsl.py",
        "values.py",
        "packages.py",
    )
    assert RUNTIMES["js"].sandbox_files == ("slice.mjs", "gpu.mjs", "values.mjs")


def test_every_language_of_the_protocol_has_a_runtime_on_both_sides():
    worker_static = RUNTIME_DIR.parent.parent / "worker_static"
    browser_tables = [
        _table_keys((worker_static / name).read_text())
        for name in ("sandbox.js", "sandbox-pool.js")
    ]
    assert all(set(LANGUAGES) == set(RUNTIMES) == keys for keys in browser_tables)


def _table_keys(script: str) -> set[str]:
    """The languages of a script's `const RUNTIMES = Object.freeze({...});` table."""
    table = re.search(r"const RUNTIMES = Object\.freeze\(\{(.*?)\n\}\);", script, re.DOTALL)
    assert table is not None, "no RUNTIMES table"
    return set(re.findall(r"^  (\w+):", table.group(1), re.MULTILINE))


def test_the_manifest_holds_the_integrity_of_every_sandbox_file():
    manifest = sandbox_file(SANDBOX_MANIFEST)
    assert manifest is not None
    match = re.search(r"export default (\{.*\});", manifest.decode(), re.DOTALL)
    assert match is not None
    hashes = json.loads(match.group(1))
    files = {name: RUNTIME_DIR / name for name in ("slice.py", "slice.mjs")}
    files["values.py"] = RUNTIME_DIR.parent / "protocol" / "values.py"  # the protocol's codec
    for name, path in files.items():
        digest = hashlib.sha256(path.read_bytes()).digest()
        assert hashes[name] == "sha256-" + base64.b64encode(digest).decode()
        assert sandbox_file(name) == path.read_bytes()


@pytest.mark.parametrize("name", ["worker.py", "runtimes.py", "../slice.py", "node_worker.mjs"])
def test_only_the_sandbox_files_are_served(name):
    assert sandbox_file(name) is None


def test_a_python_local_worker_starts_as_a_module_not_as_the_users_script():
    command = RUNTIMES["python"].local_worker()
    assert command.args[-2:] == ["-m", "dcp.runtime.worker"]
    assert command.env is not None and str(RUNTIME_DIR.parent.parent) in command.env["PYTHONPATH"]


def test_a_javascript_local_worker_needs_node(monkeypatch):
    monkeypatch.setattr(runtimes.shutil, "which", lambda name: None)
    with pytest.raises(DCPError, match="needs node on PATH") as caught:
        RUNTIMES["js"].local_worker()
    assert caught.value.code == "ENONODE"


def test_the_javascript_runtime_clips_console_lines_at_the_protocol_limit():
    script = (RUNTIME_DIR / "slice.mjs").read_text()
    limit = re.search(r"const MAX_CONSOLE_CHARS = ([\d_]+);", script)
    assert limit is not None, "slice.mjs has no MAX_CONSOLE_CHARS"
    assert int(limit.group(1).replace("_", "")) == MAX_CONSOLE_CHARS
