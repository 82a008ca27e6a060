"""The browser scripts at /dcp-client/ (dcp-client.js deploys jobs, dcp-worker.js computes them),
and example pages that use them."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from portal.wallet.models import Key, KeyKind

from .worker_files import portal_origin

CLIENT_SCRIPT = "dcp-client/dcp-client.js"
WORKER_SCRIPT = "dcp-client/dcp-worker.js"


def page_script(name: str) -> HttpResponse:
    """A script that pages load from the portal, including pages on other origins."""
    found = finders.find(name)
    if not isinstance(found, str):
        raise Http404("the script is missing")
    script = Path(found).read_bytes()  # a few kilobytes
    response = HttpResponse(script, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-cache"  # it changes with deploys: revalidate
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


@require_GET
def dcp_client_script(request: HttpRequest) -> HttpResponse:
    """The browser client: DCP's Compute API over the HTTP API."""
    return page_script(CLIENT_SCRIPT)


@require_GET
def dcp_worker_script(request: HttpRequest) -> HttpResponse:
    """`dcp.worker.Worker`: a worker that any page may embed (see worker_static/embed.js)."""
    return page_script(WORKER_SCRIPT)


@login_required
@require_GET
@ensure_csrf_cookie  # the client reads the csrftoken cookie to call the API with the session
def uppercase(request: HttpRequest) -> HttpResponse:
    """DCP's uppercase-letters example, deployed from the page and paid with the session."""
    return render(request, "examples/uppercase.html")


@require_GET
def embedded_worker(request: HttpRequest) -> HttpResponse:
    """A page of any website that lends its visitors' CPU: it works as it is on another site
    (the portal's address is written out in full), paid into the signed-in user's default
    account where there is one, else into the address typed in."""
    address = ""
    if request.user.is_authenticated:
        default = Key.objects.filter(user=request.user, kind=KeyKind.ACCOUNT, is_default=True)
        address = default.values_list("address", flat=True).first() or ""
    context = {"portal": portal_origin(request), "payment_address": address}
    return render(request, "examples/embedded_worker.html", context)
