"""What the browser tests that serve the worker files themselves need beyond testkit.worker_site."""

from __future__ import annotations

import pytest

from testkit.worker_site import PYODIDE_MODULE


def require_vendored_pyodide() -> None:
    """Fail (never skip) when the build step has not vendored Pyodide: `make test` runs it."""
    if not PYODIDE_MODULE.exists():
        pytest.fail(
            "Pyodide is not vendored: run `npm ci --prefix frontend && node frontend/build.mjs`",
            pytrace=False,
        )
