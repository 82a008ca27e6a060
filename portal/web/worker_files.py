"""Serves worker_static/ at /worker/: the supervisor, the sandbox and the vendored Pyodide.

The sandbox script carries its own Content-Security-Policy: work functions may load nothing
but Pyodide's files and may connect nowhere else (DESIGN.md, security model).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest

CONTENT_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".zip": "application/zip",
}
VENDOR_PATH = "/worker/vendor/pyodide/"


def sandbox_csp(request: HttpRequest) -> str:
    vendor = request.build_absolute_uri(VENDOR_PATH)
    return (
        f"default-src 'none'; script-src {vendor} 'wasm-unsafe-eval' 'unsafe-eval'; "
        f"connect-src {vendor}"
    )


def worker_file(request: HttpRequest, path: str) -> FileResponse:
    root = Path(settings.WORKER_STATIC_DIR).resolve()
    file = (root / path).resolve()
    if not file.is_relative_to(root) or not file.is_file() or file.name.startswith("."):
        raise Http404("no such worker file")
    content_type = CONTENT_TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0]
    response = FileResponse(
        file.open("rb"), content_type=content_type or "application/octet-stream"
    )
    response["Cross-Origin-Embedder-Policy"] = "require-corp"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    # The Pyodide files are pinned by version; the portal's own scripts change with deploys.
    vendored = path.startswith("vendor/")
    response["Cache-Control"] = "public, max-age=86400" if vendored else "no-cache"
    if file.name == "sandbox.js":
        response["Content-Security-Policy"] = sandbox_csp(request)
    return response
