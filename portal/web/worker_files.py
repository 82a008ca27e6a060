"""Serves the browser worker at /worker/: worker_static/ (supervisor, sandbox, vendored Pyodide)
and, at /worker/runtime/, the work-function runtime files of dcp/runtime/ with their manifest.
At /worker/vendor/pyodide/ it serves Pyodide's core with an operator's package repository laid
over it (portal/scheduler/pyodide_files.py).

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
import re
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotFound,
    JsonResponse,
)
from django.http.response import HttpResponseBase
from django.template import Context, Template
from django.views.decorators.http import require_GET

from dcp.runtime.packages import PYODIDE_PATH
from dcp.runtime.runtimes import sandbox_file
from portal.scheduler.pyodide_files import pyodide_file

CONTENT_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".py": "text/x-python; charset=utf-8",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".zip": "application/zip",
    ".html": "text/html; charset=utf-8",
}
VENDOR_PATH = PYODIDE_PATH
RUNTIME_PATH = "/worker/runtime/"
STORE_PATH = "/store/"  # the portal's store: the sandbox fetches jobs' blobs, stores big results
SANDBOX_HOST_PAGE = "sandbox-host.html"
HEADLESS_PAGE = "headless.html"  # the page `dcp worker` drives in headless Chromium
EMBED_PAGE = "embed.html"  # the frame dcp-worker.js puts in pages of other sites
ANY_ORIGIN = "*"
# An origin as WORKER_EMBED_ORIGINS takes it: scheme, host and port, no path.
EMBED_ORIGIN = re.compile(r"https?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?")
DEFAULT_PORTS = {"http": ":80", "https": ":443"}  # browsers leave these out of an origin
# The scripts of the sandboxes' frame: its own and the sandbox's (each file by name).
SANDBOX_HOST_SCRIPTS = (
    "sandbox-host.js",
    "sandbox-pool.js",
    "protocol.js",
    "protocol-constants.js",
    "util.js",
    "sandbox.js",
)


def portal_origin(request: HttpRequest) -> str:
    """This portal's origin as the browser sees it, e.g. https://portal.example."""
    return request.build_absolute_uri("/").rstrip("/")


def embed_origins() -> tuple[str, ...]:
    """The origins WORKER_EMBED_ORIGINS lets embed a worker (ANY_ORIGIN: any), normalised."""
    origins = []
    for entry in settings.WORKER_EMBED_ORIGINS:
        origin = entry.strip().lower().rstrip("/")
        if origin != ANY_ORIGIN and not EMBED_ORIGIN.fullmatch(origin):
            raise ImproperlyConfigured(
                f"WORKER_EMBED_ORIGINS: {entry!r} is not an origin such as https://shop.example, "
                f"nor {ANY_ORIGIN}"
            )
        origins.append(origin.removesuffix(DEFAULT_PORTS.get(origin.split(":")[0], "")))
    return tuple(origins)


def may_embed(origin: str, *, portal: str) -> bool:
    """Whether a page of `origin` may embed this portal's worker (the portal's own always may)."""
    allowed = embed_origins()
    return origin == portal or ANY_ORIGIN in allowed or origin.lower() in allowed


def frame_ancestors() -> str:
    """The CSP directive that lets the portal's own pages and the embedding origins frame."""
    return " ".join(("frame-ancestors 'self'", *embed_origins()))


def sandbox_csp(origin: str) -> str:
    """The sandbox's Content-Security-Policy for a portal at `origin` (see sandbox.js)."""
    vendor, runtime = f"{origin}{VENDOR_PATH}", f"{origin}{RUNTIME_PATH}"
    store = f"{origin}{STORE_PATH}"
    return (
        f"default-src 'none'; script-src {vendor} {runtime} 'wasm-unsafe-eval' 'unsafe-eval'; "
        # Pyodide's files; the Python runtime's files; jobs' blobs and big results
        f"connect-src {vendor} {runtime} {store}"
    )


def sandbox_host_csp(origin: str) -> str:
    """The Content-Security-Policy of the sandboxes' frame, which its sandboxes (workers started
    from data: URLs) take as theirs: the sandbox's, its scripts, and workers from data: only."""
    scripts = " ".join(f"{origin}/worker/{name}" for name in SANDBOX_HOST_SCRIPTS)
    return (
        sandbox_csp(origin)
        .replace("script-src ", f"script-src {scripts} ", 1)
        .replace("; connect-src ", "; worker-src data:; connect-src ", 1)
        + f"; {frame_ancestors()}"  # the Worker tab, or an embedded worker's frame
    )


def embed_csp(origin: str) -> str:
    """The embedded worker's frame: the worker's scripts, its socket, the store and Pyodide's
    files (its sandboxes' blobs, wheels and Pyodide, fetched once for them all), the
    sandboxes' frame."""
    socket = re.sub("^http", "ws", origin)  # https -> wss, http -> ws
    return (
        f"default-src 'none'; script-src {origin}/worker/; "
        f"connect-src {socket}/ws/worker/ {origin}{STORE_PATH} {origin}{VENDOR_PATH}; "
        f"frame-src {origin}/worker/{SANDBOX_HOST_PAGE}; base-uri 'none'; {frame_ancestors()}"
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


def worker_file(request: HttpRequest, path: str) -> HttpResponseBase:
    file = _worker_path(path)
    if file is None:
        # Readable by pages of other origins (dcp-client.js asks whether a Pyodide package's
        # file is served), as the files themselves are.
        missing = HttpResponseNotFound("no such worker file", content_type="text/plain")
        missing["Access-Control-Allow-Origin"] = "*"
        return missing
    content_type = CONTENT_TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0]
    response = FileResponse(
        file.open("rb"), content_type=content_type or "application/octet-stream"
    )
    # The Pyodide files are pinned by version; the portal's own scripts change with deploys.
    worker_headers(response, cache=path.startswith("vendor/"))
    csp = file_csp(path, portal_origin(request))
    if csp is not None:
        response["Content-Security-Policy"] = csp
    if path == SANDBOX_HOST_PAGE:
        # The Worker tab frames it, and so do embedded workers' frames in the pages of the
        # WORKER_EMBED_ORIGINS: frame-ancestors names those, X-Frame-Options cannot.
        if embed_origins():
            response.xframe_options_exempt = True  # type: ignore[attr-defined]
        else:
            response["X-Frame-Options"] = "SAMEORIGIN"
    if path == HEADLESS_PAGE:
        # `dcp worker`'s page: cross-origin isolated like the Worker tab (so a runaway Python
        # slice is interrupted, not its sandbox killed), and framed by no one.
        response["Cross-Origin-Opener-Policy"] = "same-origin"
        response["X-Frame-Options"] = "DENY"
    return response


def _worker_path(path: str) -> Path | None:
    """The file served as /worker/<path>: Pyodide's from its folders (pyodide_files.py), the
    others from WORKER_STATIC_DIR."""
    pyodide = VENDOR_PATH.removeprefix("/worker/")
    if path.startswith(pyodide):
        return pyodide_file(path.removeprefix(pyodide))
    root = Path(settings.WORKER_STATIC_DIR).resolve()
    file = (root / path).resolve()
    if not file.is_relative_to(root) or not file.is_file() or file.name.startswith("."):
        return None
    return file


def runtime_file(request: HttpRequest, name: str) -> HttpResponse:
    """A work-function runtime file (slice.py, slice.mjs) or the generated manifest.mjs."""
    content = sandbox_file(name)
    if content is None:
        raise Http404("no such runtime file")
    content_type = CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")
    response = HttpResponse(content, content_type=content_type)
    worker_headers(response, cache=False)  # the manifest's hashes must match what is served
    return response


@require_GET
def embed_page(request: HttpRequest) -> HttpResponse:
    """The frame of a worker embedded in another site's page (worker_static/embed.html), with
    the origins it takes commands from; only those origins may frame it."""
    portal = portal_origin(request)
    page = Template((Path(settings.WORKER_STATIC_DIR) / EMBED_PAGE).read_text())
    origins = " ".join((portal, *embed_origins()))
    response = HttpResponse(page.render(Context({"origins": origins})), CONTENT_TYPES[".html"])
    worker_headers(response, cache=False)
    # A cross-origin isolated page (COEP) may frame it; frame-ancestors, not X-Frame-Options,
    # says who may.
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    response["Content-Security-Policy"] = embed_csp(portal)
    response.xframe_options_exempt = True  # type: ignore[attr-defined]
    return response


@require_GET
def embed_access(request: HttpRequest) -> JsonResponse:
    """What dcp-worker.js asks before it frames the worker, so that a refusal comes with words:
    may a page of `?origin=` embed it, and must it bring a worker token."""
    embeddable = may_embed(request.GET.get("origin", ""), portal=portal_origin(request))
    token_needed = not settings.ALLOW_ANONYMOUS_WORKERS and not request.user.is_authenticated
    response = JsonResponse({"embeddable": embeddable, "tokenNeeded": token_needed})
    response["Access-Control-Allow-Origin"] = "*"
    response["Cache-Control"] = "no-cache"
    return response
