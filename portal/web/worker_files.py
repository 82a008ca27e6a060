"""Serves the browser worker at /worker/: worker_static/ (supervisor, sandbox, vendored Pyodide)
and, at /worker/runtime/, the work-function runtime files of dcp/runtime/ with their manifest.

The sandbox script carries its own Content-Security-Policy: work functions may load nothing
but Pyodide's files and the runtime's, and may connect nowhere else (DESIGN.md, security model).
The Worker tab runs its sandboxes in a frame of an opaque origin (sandbox-host.html, in
<iframe sandbox>, so that a sandbox that exhausts memory crashes that frame's process, not the
tab): that frame loads the worker files cross-origin, so every one is served with CORS, and its
sandboxes take the frame's Content-Security-Policy, which is the sandbox's plus the frame's own
scripts.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from dcp.runtime.runtimes import sandbox_file

CONTENT_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".py": "text/x-python; charset=utf-8",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".zip": "application/zip",
    ".html": "text/html; charset=utf-8",
}
VENDOR_PATH = "/worker/vendor/pyodide/"
RUNTIME_PATH = "/worker/runtime/"
SANDBOX_HOST_PAGE = "sandbox-host.html"
HEADLESS_PAGE = "headless.html"  # the page `dcp worker` drives in headless Chromium
# The scripts of the sandboxes' frame: its own and the sandbox's (each file by name).
SANDBOX_HOST_SCRIPTS = (
    "sandbox-host.js",
    "sandbox-pool.js",
    "protocol.js",
    "protocol-constants.js",
    "util.js",
    "sandbox.js",
)


def sandbox_csp(origin: str) -> str:
    """The sandbox's Content-Security-Policy for a portal at `origin` (see sandbox.js)."""
    vendor, runtime = f"{origin}{VENDOR_PATH}", f"{origin}{RUNTIME_PATH}"
    return (
        f"default-src 'none'; script-src {vendor} {runtime} 'wasm-unsafe-eval' 'unsafe-eval'; "
        f"connect-src {vendor} {runtime}"  # Pyodide's files; the Python runtime's files
    )


def sandbox_host_csp(origin: str) -> str:
    """The Content-Security-Policy of the sandboxes' frame, which its sandboxes (workers started
    from data: URLs) take as theirs: the sandbox's, its scripts, and workers from data: only."""
    scripts = " ".join(f"{origin}/worker/{name}" for name in SANDBOX_HOST_SCRIPTS)
    return (
        sandbox_csp(origin)
        .replace("script-src ", f"script-src {scripts} ", 1)
        .replace("; connect-src ", "; worker-src data:; connect-src ", 1)
        + "; frame-ancestors 'self'"
    )


def file_csp(name: str, origin: str) -> str | None:
    """The Content-Security-Policy of the worker file `name` (under /worker/), if it has one."""
    if name == "sandbox.js":
        return sandbox_csp(origin)
    if name == SANDBOX_HOST_PAGE:
        return sandbox_host_csp(origin)
    return None


def worker_headers(response: HttpResponseBase, *, cache: bool) -> None:
    """What every worker file needs: it is loaded by a cross-origin isolated page, and by the
    sandboxes' frame, whose origin is opaque (CORS: these are public static files)."""
    response["Cross-Origin-Embedder-Policy"] = "require-corp"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    response["Access-Control-Allow-Origin"] = "*"
    response["Cache-Control"] = "public, max-age=86400" if cache else "no-cache"


def worker_file(request: HttpRequest, path: str) -> FileResponse:
    root = Path(settings.WORKER_STATIC_DIR).resolve()
    file = (root / path).resolve()
    if not file.is_relative_to(root) or not file.is_file() or file.name.startswith("."):
        raise Http404("no such worker file")
    content_type = CONTENT_TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0]
    response = FileResponse(
        file.open("rb"), content_type=content_type or "application/octet-stream"
    )
    # The Pyodide files are pinned by version; the portal's own scripts change with deploys.
    worker_headers(response, cache=path.startswith("vendor/"))
    csp = file_csp(path, request.build_absolute_uri("/").rstrip("/"))
    if csp is not None:
        response["Content-Security-Policy"] = csp
    if path == SANDBOX_HOST_PAGE:
        response["X-Frame-Options"] = "SAMEORIGIN"  # the Worker tab frames it; no one else
    if path == HEADLESS_PAGE:
        # `dcp worker`'s page: cross-origin isolated like the Worker tab (so a runaway Python
        # slice is interrupted, not its sandbox killed), and framed by no one.
        response["Cross-Origin-Opener-Policy"] = "same-origin"
        response["X-Frame-Options"] = "DENY"
    return response


def runtime_file(request: HttpRequest, name: str) -> HttpResponse:
    """A work-function runtime file (slice.py, slice.mjs) or the generated manifest.mjs."""
    content = sandbox_file(name)
    if content is None:
        raise Http404("no such runtime file")
    content_type = CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")
    response = HttpResponse(content, content_type=content_type)
    worker_headers(response, cache=False)  # the manifest's hashes must match what is served
    return response
