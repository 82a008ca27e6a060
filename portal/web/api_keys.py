"""The API keys section of the First Devs tab: create a key (shown once) and revoke one."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from portal.api import services
from portal.wallet.services import WalletError

from . import views
from .forms import first_error
from .views import AuthedRequest


class ApiKeyForm(forms.Form):
    label = forms.CharField(max_length=40)
    identity = forms.CharField(max_length=42)
    account = forms.CharField(max_length=42)


@login_required
@require_POST
def create_api_key(request: AuthedRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        messages.error(request, first_error(form))
        return redirect("first_devs")
    try:
        key, token = services.create_api_key(
            user=request.user,
            label=form.cleaned_data["label"],
            identity_address=form.cleaned_data["identity"],
            account_address=form.cleaned_data["account"],
        )
    except WalletError as error:
        messages.error(request, str(error))
        return redirect("first_devs")
    messages.success(request, f"API key {key.label} created.")
    # The token is rendered in this response and stored nowhere (only its digest is), so the
    # page is rendered here rather than after a redirect, and never cached.
    request.new_api_key = token  # type: ignore[attr-defined]
    response = views.first_devs(request)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def revoke_api_key(request: AuthedRequest, prefix: str) -> HttpResponse:
    key = services.revoke_api_key(user=request.user, prefix=prefix)
    if key is None:
        messages.error(request, "No such API key: it may be revoked already.")
    else:
        messages.success(request, f"API key {key.label} is revoked: requests with it now fail.")
    return redirect("first_devs")
