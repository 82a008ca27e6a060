"""The browser client script at /dcp-client/dcp-client.js, and example pages that use it."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

CLIENT_SCRIPT = "dcp-client/dcp-client.js"


@require_GET
def dcp_client_script(request: HttpRequest) -> HttpResponse:
    """The script pages load from the portal (including pages on other origins)."""
    found = finders.find(CLIENT_SCRIPT)
    if not isinstance(found, str):
        raise Http404("the client script is missing")
    script = Path(found).read_bytes()  # a few kilobytes
    response = HttpResponse(script, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-cache"  # it changes with deploys: revalidate
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


@login_required
@require_GET
@ensure_csrf_cookie  # the client reads the csrftoken cookie to call the API with the session
def uppercase(request: HttpRequest) -> HttpResponse:
    """DCP's uppercase-letters example, deployed from the page and paid with the session."""
    return render(request, "examples/uppercase.html")
