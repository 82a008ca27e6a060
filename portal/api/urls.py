"""/api/v0: the Ninja API, its readable docs, and JSON answers for unknown paths and methods."""

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


@csrf_exempt  # like every API view: no cookie is accepted, so there is nothing to forge
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return error_response(404, "ENOTFOUND", f"no API endpoint at {request.path[:200]}")


def _patterns() -> list[URLPattern | URLResolver]:
    patterns, _, _ = api.urls
    wrapped: list[URLPattern | URLResolver] = []
    for pattern in patterns:
        if isinstance(pattern, URLPattern):
            pattern = URLPattern(
                pattern.pattern,
                json_fallbacks(pattern.callback),
                pattern.default_args,
                pattern.name,
            )
        wrapped.append(pattern)
    return wrapped


urlpatterns = [
    path("docs", docs, name="docs"),
    *_patterns(),
    re_path(r"^.*$", not_found),
]
app_name = "api-v0"
