"""The worker files served exactly as the portal serves them, without the portal: for the
browser tests of the sandbox and the benchmarks that drive a sandbox pool in Chromium.

    with WorkerSite({"/harness.html": path_of_a_page}) as site:
        page.goto(f"{site.origin}/harness.html")

`worker_file()` gives the body and headers the portal gives (worker_static/, the runtime files
at /worker/runtime/, the sandbox's Content-Security-Policy); `WorkerSite` is a threaded HTTP
server on 127.0.0.1 that serves them and a few pages, cross-origin isolated (so a page has
SharedArrayBuffer, hence Python interrupts), and records every path asked for.
"""

from __future__ import annotations

import http.server
import threading
from contextlib import suppress
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

from dcp.runtime.runtimes import sandbox_file
from portal.web.worker_files import CONTENT_TYPES as PORTAL_CONTENT_TYPES
from portal.web.worker_files import RUNTIME_PATH, file_csp

from .livesite import REPO

WORKER_STATIC = REPO / "worker_static"
PYODIDE_MODULE = WORKER_STATIC / "vendor" / "pyodide" / "pyodide.mjs"
CONTENT_TYPES = {
    **PORTAL_CONTENT_TYPES,
    ".html": "text/html; charset=utf-8",
    ".css": "text/css",
}
RUNTIME_MODULE_PATH = f"{RUNTIME_PATH}slice.py"


def worker_file(path: str, origin: str) -> tuple[bytes, dict[str, str]] | None:
    """The body and headers the portal serves at `path` (under /worker/), or None (404).

    Covers worker_static/ (sandbox.js and sandbox-host.html with their Content-Security-Policy
    for `origin`, every file with CORS) and the runtime files at /worker/runtime/, so a test
    server serves exactly what the portal does.
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
    # CORS as the portal sends it: the sandboxes' frame has an opaque origin.
    headers = {
        "Content-Type": CONTENT_TYPES.get(suffix, "application/octet-stream"),
        "Access-Control-Allow-Origin": "*",
    }
    csp = file_csp(path.removeprefix("/worker/"), origin)
    if csp is not None and not path.startswith(RUNTIME_PATH):
        headers["Content-Security-Policy"] = csp
    return body, headers


class WorkerSite(http.server.ThreadingHTTPServer):
    """Serves `pages` (URL path -> file) and the worker files on a free port of 127.0.0.1.

    `cache_pyodide`: Pyodide's files may be cached, as the portal lets them be (a benchmark
    measures what a returning volunteer sees); else nothing is. `tampered_runtime`: serve a
    slice.py that its manifest does not describe (a test of the integrity check).
    """

    daemon_threads = True

    def __init__(self, pages: dict[str, Path], *, cache_pyodide: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pages = pages
        self.cache_pyodide = cache_pyodide
        self.origin = f"http://127.0.0.1:{self.server_address[1]}"
        self.requested_paths: list[str] = []
        self.tampered_runtime = False
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> WorkerSite:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()
        self.server_close()

    def served(self, path: str) -> tuple[bytes, dict[str, str]] | None:
        if path in self.pages:
            file = self.pages[path]
            return file.read_bytes(), {"Content-Type": CONTENT_TYPES[file.suffix]}
        served = worker_file(path, self.origin)
        if served is not None and path == RUNTIME_MODULE_PATH and self.tampered_runtime:
            body, headers = served
            return body + b"\nprint('not the runtime the manifest describes')\n", headers
        return served


class _Handler(http.server.BaseHTTPRequestHandler):
    server: WorkerSite

    def do_GET(self) -> None:
        self.server.requested_paths.append(self.path)
        path = self.path.split("?", 1)[0]
        served = self.server.served(path)
        if served is None:
            self.send_error(404)
            return
        body, headers = served
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        cacheable = self.server.cache_pyodide and path.startswith("/worker/vendor/")
        self.send_header("Cache-Control", "public, max-age=86400" if cacheable else "no-store")
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.end_headers()
        # A sandbox may be terminated, or the page closed, while it loads a file.
        with suppress(ConnectionError):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass
