"""The Workers page: worker tokens, with which a worker that is no signed-in tab (a headless
browser) works for its owner. Create one (shown once), see when each was last used, revoke.

Every view filters on `WorkerToken.owner`, so another user's token answers 404. A new token is
rendered in the answer to the POST that made it, never after a redirect, and that answer is
not cached: the token is stored nowhere but as a digest.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from portal.scheduler import worker_credentials
from portal.scheduler.errors import SchedulerError
from portal.scheduler.models import WorkerToken

from .forms import WorkerTokenForm, first_error
from .views import AuthedRequest


def _page(request: AuthedRequest, new_token: str = "") -> HttpResponse:
    tokens = WorkerToken.objects.filter(owner=request.user)
    context = {"tab": "workers", "tokens": tokens, "new_token": new_token}
    response = render(request, "web/workers.html", context)
    if new_token:
        response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def workers(request: AuthedRequest) -> HttpResponse:
    return _page(request)


@login_required
@require_POST
def create_token(request: AuthedRequest) -> HttpResponse:
    form = WorkerTokenForm(request.POST)
    if not form.is_valid():
        messages.error(request, first_error(form))
        return redirect("workers")
    try:
        token, text = worker_credentials.create_worker_token(
            owner=request.user, name=form.cleaned_data["name"]
        )
    except SchedulerError as error:
        messages.error(request, error.message)
        return redirect("workers")
    messages.success(request, f"Worker token {token.name} created.")
    return _page(request, new_token=text)


@login_required
@require_POST
def revoke_token(request: AuthedRequest, prefix: str) -> HttpResponse:
    token = get_object_or_404(WorkerToken, owner=request.user, prefix=prefix)
    if worker_credentials.revoke_worker_token(token=token):
        messages.success(request, f"Worker token {token.name} is revoked: its workers stop.")
    else:
        messages.error(request, f"Worker token {token.name} was revoked already.")
    return redirect("workers")
