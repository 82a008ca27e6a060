"""`/store/<sha256>`: GET and HEAD serve an object to anyone, PUT stores one (docs/store.md).

Objects never change, so a read is cacheable for a year by anyone; it is served with CORS and
a cross-origin resource policy because sandboxes, whose frame has an opaque origin, fetch them.
Sandboxes also store big results (PUT with a worker's ticket), so a CORS preflight (OPTIONS) is
answered too: any origin may send the headers that authenticate, never with cookies. The
portal's own pages store with the session, checked against its CSRF token (auth.py).
Errors have the REST API's shape, `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.utils.http import parse_etags
from django.views.decorators.csrf import csrf_exempt

from dcp.protocol.values import is_sha256
from portal.api.errors import ApiError, error_response

from . import services
from .auth import uploader
from .errors import StoreError
from .files import object_path
from .models import StoredObject
from .selectors import object_of

CONTENT_TYPE = "application/octet-stream"
IMMUTABLE = "public, max-age=31536000, immutable"
# What a cross-origin PUT may send (the credentials of auth.py), and how long a browser may
# remember the preflight's answer.
UPLOAD_HEADERS = "Authorization, Content-Type, X-DCP-Identity, X-DCP-Expires, X-DCP-Signature"
PREFLIGHT_MAX_AGE = "86400"
SEND_BLOCK_BYTES = 1024 * 1024  # a file is streamed this much at a time

Handler = Callable[[HttpRequest, str], HttpResponseBase]


@csrf_exempt  # the session's CSRF check is auth.py's: the other credentials need no token
def store_object(request: HttpRequest, sha256: str) -> HttpResponseBase:
    """Read (GET, HEAD) or store (PUT) the object named by its SHA-256."""
    handler = HANDLERS.get(request.method or "")
    if handler is None:
        response = error_response(405, "EMETHOD", f"/store/ takes {', '.join(HANDLERS)}")
        response["Allow"] = ", ".join(HANDLERS)
        return response
    try:
        if not is_sha256(sha256):
            raise StoreError(
                400,
                "EINVALID",
                "an object of the store is named by its SHA-256 in 64 lowercase hex",
            )
        return handler(request, sha256)
    except (StoreError, ApiError) as error:
        return _cross_origin(error_response(error.status, error.code, error.message))


def read_object(request: HttpRequest, sha256: str) -> HttpResponseBase:
    """GET: the object's bytes, streamed; 304 when the reader has them (If-None-Match)."""
    _stored(sha256)
    etag = f'"{sha256}"'
    if {etag, "*"} & set(parse_etags(request.headers.get("If-None-Match", ""))):
        return _immutable(HttpResponse(status=304), sha256)
    try:
        file = object_path(sha256).open("rb")
    except FileNotFoundError:
        raise _missing(sha256) from None
    response = FileResponse(file, content_type=CONTENT_TYPE)  # its Content-Length too
    response.block_size = SEND_BLOCK_BYTES
    return _immutable(response, sha256)


def object_head(request: HttpRequest, sha256: str) -> HttpResponseBase:
    """HEAD: whether the store has the object, and its size, without its bytes."""
    stored = _stored(sha256)
    response = HttpResponse(content_type=CONTENT_TYPE)
    response["Content-Length"] = str(stored.size)
    return _immutable(response, sha256)


def store(request: HttpRequest, sha256: str) -> HttpResponseBase:
    """PUT: store the body as the object (201), or take ownership of one the store has (200:
    its body is not read; an empty body claims it without sending it)."""
    size = _content_length(request)
    if size == 0 and sha256 != services.EMPTY_SHA256:
        claimed = _stored(sha256)  # the signature covers the object's size
        user = uploader(request, sha256=sha256, size=claimed.size)
        return _answer(services.claim_object(user=user, sha256=sha256), 200)
    services.check_upload(sha256=sha256, size=size)
    user = uploader(request, sha256=sha256, size=size)
    stored, created = services.put_object(user=user, sha256=sha256, size=size, stream=request)
    return _answer(stored, 201 if created else 200)


def preflight(request: HttpRequest, sha256: str) -> HttpResponseBase:
    """OPTIONS: a browser's CORS preflight of a PUT from another origin (a sandbox's)."""
    response = HttpResponse(status=204)
    response["Access-Control-Allow-Methods"] = ", ".join(HANDLERS)
    response["Access-Control-Allow-Headers"] = UPLOAD_HEADERS
    response["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return _cross_origin(response)


HANDLERS: dict[str, Handler] = {
    "GET": read_object,
    "HEAD": object_head,
    "PUT": store,
    "OPTIONS": preflight,
}


def _content_length(request: HttpRequest) -> int:
    text = request.headers.get("Content-Length", "")
    if not text.isascii() or not text.isdigit():
        raise StoreError(
            400,
            "EINVALID",
            "PUT /store/<sha256> needs a Content-Length: the object's size in bytes",
        )
    return int(text)


def _stored(sha256: str) -> StoredObject:
    stored = object_of(sha256)
    if stored is None:
        raise _missing(sha256)
    return stored


def _missing(sha256: str) -> StoreError:
    return StoreError(404, "ENOTFOUND", f"the store has no object {sha256}")


def _answer(stored: StoredObject, status: int) -> HttpResponseBase:
    response = JsonResponse({"sha256": stored.sha256, "size": stored.size}, status=status)
    return _cross_origin(response)


def _immutable(response: HttpResponseBase, sha256: str) -> HttpResponseBase:
    response["ETag"] = f'"{sha256}"'
    response["Cache-Control"] = IMMUTABLE
    return _cross_origin(response)


def _cross_origin(response: HttpResponseBase) -> HttpResponseBase:
    """Readable from any origin (the sandboxes' frame has an opaque one), never with cookies."""
    response["Access-Control-Allow-Origin"] = "*"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response
