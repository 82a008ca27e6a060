"""What the browser tests that serve worker_static/ themselves share with the portal."""

from __future__ import annotations

import pytest

from portal.web.worker_files import CONTENT_TYPES as PORTAL_CONTENT_TYPES
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
