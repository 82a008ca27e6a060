"""API errors: every failure is JSON `{"error": {"code", "message"}}` with a fitting status.

Ninja's own handlers answer `{"detail": ...}` with 422 for bad input and let other exceptions
become Django's HTML 500; these replace them, so that no bad input can produce a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja.errors import AuthenticationError, HttpError, ValidationError

from portal.scheduler.errors import SchedulerError

if TYPE_CHECKING:
    from ninja import NinjaAPI

log = logging.getLogger(__name__)

# The HTTP status of each scheduler error code.
SCHEDULER_STATUS = {
    "EINVALID": 400,
    "EBADPAYMENT": 400,
    "ENOFUNDS": 402,
    "ENOTFIRSTDEV": 403,
    "ENOJOB": 404,
    "ECLOSED": 409,
    "EIDEMPOTENCY": 409,
}
# The code of an error Ninja raises with only a status.
STATUS_CODE = {
    400: "EINVALID",
    401: "EAUTH",
    403: "EFORBIDDEN",
    404: "ENOTFOUND",
    429: "ETHROTTLED",
}
# The pydantic error type of a request dcp-rest takes that the portal cannot carry out.
UNSUPPORTED = "unsupported"
AUTH_HINT = 'Bearer realm="DCP Portal", Basic realm="DCP Portal"'


class ApiError(Exception):
    """A refused API request: HTTP `status`, a stable `code` and a message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers: dict[str, str] = {}  # sent with the answer, e.g. Retry-After


def error_response(status: int, code: str, message: str) -> HttpResponse:
    response = JsonResponse({"error": {"code": code, "message": message}}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = AUTH_HINT
    return response


def describe(errors: list[dict[str, Any]]) -> str:
    """One line naming the first bad field: `body.work.function: Field required`."""
    first = errors[0] if errors else {}
    where = [str(part) for part in first.get("loc", ())]
    if len(where) >= 2 and where[0] == "body" and where[1] == "body":
        where = where[1:]  # Ninja nests the body model under its parameter name
    text = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    return f"{'.'.join(where)}: {text}" if where else text


def install(api: NinjaAPI) -> None:
    """Replace Ninja's default exception handlers with ones that answer our error shape."""
    handlers: list[tuple[type[Exception], Callable[[HttpRequest, Any], HttpResponse]]] = [
        (ApiError, _api_error),
        (SchedulerError, _scheduler_error),
        (ValidationError, _validation_error),
        (AuthenticationError, _unauthenticated),
        (HttpError, _http_error),
        (Http404, _not_found),
        (RequestDataTooBig, _too_large),
        (SuspiciousOperation, _suspicious),
        (Exception, _unexpected),
    ]
    for exception, handler in handlers:
        api.add_exception_handler(exception, handler)


def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    response = error_response(exc.status, exc.code, exc.message)
    for name, value in exc.headers.items():
        response[name] = value
    return response


def _scheduler_error(request: HttpRequest, exc: SchedulerError) -> HttpResponse:
    return error_response(SCHEDULER_STATUS.get(exc.code, 400), exc.code, exc.message)


def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    # A dcp-rest request this portal cannot carry out, rather than a malformed one.
    unsupported = [error for error in exc.errors if error.get("type") == UNSUPPORTED]
    if unsupported:
        return error_response(400, "EUNSUPPORTED", describe(unsupported))
    return error_response(400, "EINVALID", describe(exc.errors))


def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(
        401,
        "EAUTH",
        "send 'Authorization: Bearer <API key>' (create one on the First Devs tab) "
        "or 'Authorization: Basic base64(<identity keystore JSON>:<passphrase>)'",
    )


def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    status = exc.status_code
    message = str(exc)
    if status == 400 and exc.__cause__ is not None:
        # Ninja says only "Cannot parse request body" outside DEBUG; say why.
        message = f"the body is not valid JSON: {str(exc.__cause__)[:200]}"
    return error_response(status, STATUS_CODE.get(status, "EINVALID"), message)


def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(404, "ENOTFOUND", "no such resource")


def _too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return error_response(
        413, "ETOOLARGE", "the request body is too large: send the slices in several batches"
    )


def _suspicious(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    return error_response(400, "EINVALID", "the request is malformed")


def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.exception("API request %s %s failed", request.method, request.path)
    return error_response(500, "EINTERNAL", "the server failed: this is a bug, please report it")
