"""/api/v0: the Ninja API, its readable docs, JSON answers for unknown paths and methods, and
CORS for API keys.

Pages on other origins may call the API with an API key (dcp-client.js does): a preflight is
answered for any origin, and a response to a Bearer request says any origin may read it.
Credentials are never allowed cross-origin, so the session cookie and Basic stay same-origin.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern, URLResolver, path, re_path
from django.views.decorators.csrf import csrf_exempt

from .errors import error_response
from .views.api import api
from .views.docs import docs

View = Callable[..., HttpResponse]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
    "Access-Control-Max-Age": "600",
}


def cors_for_api_keys(view: View) -> View:
    """Answer CORS preflights; let any origin read the answer to a request with an API key."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if _is_preflight(request):
            return HttpResponse(status=204, headers=CORS_HEADERS)
        response = view(request, *args, **kwargs)
        if _is_bearer(request):
            response["Access-Control-Allow-Origin"] = "*"
        return response

    return wrapper


def _is_preflight(request: HttpRequest) -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def _is_bearer(request: HttpRequest) -> bool:
    return request.headers.get("Authorization", "")[:7].lower() == "bearer "


def json_fallbacks(view: View) -> View:
    """Ninja answers a wrong method and its own root with plain text or HTML: make them JSON."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            response = view(request, *args, **kwargs)
        except Http404:
            return not_found(request)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            response = error_response(
                405, "EMETHOD", f"{request.method} is not allowed here: use {allowed}"
            )
            response["Allow"] = allowed
        return response

    return wrapper


@cors_for_api_keys
@csrf_exempt  # like every Ninja view: the session's CSRF token is checked by auth.py
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return error_response(404, "ENOTFOUND", f"no API endpoint at {request.path[:200]}")


def _patterns() -> list[URLPattern | URLResolver]:
    """Ninja's URL patterns with CORS and JSON answers, each endpoint also with a trailing
    slash: dcp-rest (Express) routes /job/ as /job, and its own examples post to /job/."""
    patterns, _, _ = api.urls
    wrapped: list[URLPattern | URLResolver] = []
    for pattern in patterns:
        if isinstance(pattern, URLPattern):
            view = cors_for_api_keys(json_fallbacks(pattern.callback))
            wrapped.append(URLPattern(pattern.pattern, view, pattern.default_args, pattern.name))
            route = str(pattern.pattern)
            if route and "." not in route:
                wrapped.append(path(route + "/", view, pattern.default_args))
        else:
            wrapped.append(pattern)
    return wrapped


urlpatterns = [
    path("docs", docs, name="docs"),
    *_patterns(),
    re_path(r"^.*$", not_found),
]
app_name = "api-v0"
