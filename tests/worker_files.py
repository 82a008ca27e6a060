"""What the browser tests that serve the worker files themselves share with the portal."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from dcp.runtime.runtimes import sandbox_file
from portal.web.worker_files import CONTENT_TYPES as PORTAL_CONTENT_TYPES
from portal.web.worker_files import RUNTIME_PATH, sandbox_csp
from testkit.livesite import REPO

WORKER_STATIC = REPO / "worker_static"
CONTENT_TYPES = {
    **PORTAL_CONTENT_TYPES,
    ".html": "text/html; charset=utf-8",
    ".css": "text/css",
}


def require_vendored_pyodide() -> None:
    """Fail (never skip) when the build step has not vendored Pyodide: `make test` runs it."""
    if not (WORKER_STATIC / "vendor" / "pyodide" / "pyodide.mjs").exists():
        pytest.fail(
            "Pyodide is not vendored: run `npm ci --prefix frontend && node frontend/build.mjs`",
            pytrace=False,
        )


def worker_file(path: str, origin: str) -> tuple[bytes, dict[str, str]] | None:
    """The body and headers the portal serves at `path` (under /worker/), or None (404).

    Covers worker_static/ (sandbox.js with its Content-Security-Policy for `origin`) and the
    runtime files at /worker/runtime/, so a test server serves exactly what the portal does.
    """
    if path.startswith(RUNTIME_PATH):
        name = path.removeprefix(RUNTIME_PATH)
        body = sandbox_file(name)
    elif path.startswith("/worker/"):
        file = (WORKER_STATIC / path.removeprefix("/worker/")).resolve()
        inside = file.is_relative_to(WORKER_STATIC) and file.is_file()
        body = file.read_bytes() if inside else None
    else:
        return None
    if body is None:
        return None
    suffix = PurePosixPath(path).suffix
    headers = {"Content-Type": CONTENT_TYPES.get(suffix, "application/octet-stream")}
    if path == "/worker/sandbox.js":
        headers["Content-Security-Policy"] = sandbox_csp(origin)
    return body, headers
