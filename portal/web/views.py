"""Portal pages. Each view parses its input, calls one service, and renders or redirects."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from dcp.protocol.credits import format_credits
from portal.bank import services as bank
from portal.bank.selectors import balance_of, balances_of
from portal.scheduler.selectors import market_gpu_price, market_price, worker_tally
from portal.users.models import User
from portal.users.services import join_first_devs
from portal.wallet import services as wallet
from portal.wallet.models import Key, KeyKind
from portal.wallet.sealing import SealError

from .forms import ChangePassphraseForm, KeystoreDownloadForm, LabelForm, TransferForm, first_error


class AuthedRequest(HttpRequest):
    """A request behind @login_required: its user is a real User."""

    user: User  # type: ignore[assignment]


def account_cards(user: User) -> list[dict[str, Any]]:
    """The user's account keys with their balances, the default first (Key's ordering): the
    Accounts tab's cards and the Worker tab's "Pay into" choices."""
    keys = list(Key.objects.filter(user=user, kind=KeyKind.ACCOUNT))
    balances = balances_of([key.address for key in keys])
    return [{"key": key, "balance": format_credits(balances[key.address])} for key in keys]


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "web/home.html")


@login_required
def worker(request: AuthedRequest) -> HttpResponse:
    slices, earned = worker_tally(request.user)
    price, jobs_priced = market_price()
    context = {
        "tab": "worker",
        "slices_computed": slices,
        "credits_earned": format_credits(earned),
        "market_price": format_credits(price),
        "market_jobs": jobs_priced,
        "market_gpu_price": format_credits(market_gpu_price()[0]),
        "accounts": account_cards(request.user),  # what "Pay into" offers, the default first
    }
    response = render(request, "web/worker.html", context)
    # Cross-origin isolation lets the page interrupt a runaway Python slice without killing
    # its sandbox (SharedArrayBuffer); everything the tab loads is the portal's own.
    response["Cross-Origin-Opener-Policy"] = "same-origin"
    response["Cross-Origin-Embedder-Policy"] = "require-corp"
    return response


@login_required
def accounts(request: AuthedRequest) -> HttpResponse:
    cards = account_cards(request.user)
    context = {"tab": "accounts", "cards": cards, "transfer_request_id": uuid.uuid4()}
    return render(request, "web/accounts.html", context)


@login_required
@require_POST
def new_account_key(request: AuthedRequest) -> HttpResponse:
    form = LabelForm(request.POST)
    if not form.is_valid():
        messages.error(request, first_error(form))
        return redirect("accounts")
    try:
        key = wallet.create_key(
            user=request.user, kind=KeyKind.ACCOUNT, label=form.cleaned_data["label"]
        )
    except wallet.WalletError as error:
        messages.error(request, str(error))
        return redirect("accounts")
    messages.success(request, f"New account {key.label} created at {key.address}.")
    return redirect("accounts")


@login_required
@require_GET
def key_balance(request: AuthedRequest, address: str) -> JsonResponse:
    key = get_object_or_404(Key, user=request.user, kind=KeyKind.ACCOUNT, address=address)
    return JsonResponse(
        {"address": key.address, "balance": format_credits(balance_of(key.address))}
    )


@login_required
@require_POST
def download_keystore(request: AuthedRequest, address: str) -> HttpResponse:
    key = get_object_or_404(Key, user=request.user, address=address)
    form = KeystoreDownloadForm(request.POST)
    back = "first_devs" if key.kind == KeyKind.IDENTITY else "accounts"
    if not form.is_valid():
        messages.error(request, first_error(form))
        return redirect(back)
    try:
        keystore = wallet.export_keystore(
            key=key,
            file_passphrase=form.cleaned_data["file_passphrase"],
            key_passphrase=form.cleaned_data["key_passphrase"],
        )
    except SealError as error:
        messages.error(request, f"{key.label}: {error}. Nothing was downloaded.")
        return redirect(back)
    response = HttpResponse(json.dumps(keystore, indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{key.keystore_filename}"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def change_passphrase(request: AuthedRequest, address: str) -> HttpResponse:
    key = get_object_or_404(Key, user=request.user, address=address)
    back = "first_devs" if key.kind == KeyKind.IDENTITY else "accounts"
    form = ChangePassphraseForm(request.POST)
    if not form.is_valid():
        messages.error(request, first_error(form))
        return redirect(back)
    try:
        wallet.change_key_passphrase(
            key=key, current=form.cleaned_data["current"], new=form.cleaned_data["new"]
        )
    except SealError as error:
        messages.error(request, f"{key.label}: {error}. The passphrase is unchanged.")
        return redirect(back)
    state = "set" if key.has_passphrase else "removed"
    messages.success(request, f"The keystore passphrase of {key.label} is {state}.")
    return redirect(back)


@login_required
@require_POST
def transfer(request: AuthedRequest) -> HttpResponse:
    form = TransferForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Transfer refused: {first_error(form)}")
        return redirect("accounts")
    data = form.cleaned_data
    source = get_object_or_404(Key, user=request.user, kind=KeyKind.ACCOUNT, address=data["source"])
    try:
        wallet.transfer_credits(
            source=source,
            target_address=data["target"],
            amount=data["amount"],
            key_passphrase=data["key_passphrase"],
            request_id=str(data["request_id"]),
        )
    except (wallet.WalletError, SealError, bank.BankError) as error:
        messages.error(request, f"Transfer refused: {error}. No credits moved.")
        return redirect("accounts")
    messages.success(request, f"Sent {format_credits(data['amount'])} credits to {data['target']}.")
    return redirect("accounts")


@login_required
def first_devs(request: AuthedRequest) -> HttpResponse:
    identities = Key.objects.filter(user=request.user, kind=KeyKind.IDENTITY)
    return render(request, "web/first_devs.html", {"tab": "first_devs", "identities": identities})


@login_required
@require_POST
def join(request: AuthedRequest) -> HttpResponse:
    if join_first_devs(user=request.user):
        messages.success(request, "Welcome to First Devs: 10 credits are in your default account.")
    else:
        messages.info(request, "You are already a member of First Devs.")
    return redirect("first_devs")


@login_required
@require_POST
def new_identity_key(request: AuthedRequest) -> HttpResponse:
    form = LabelForm(request.POST)
    if not form.is_valid():
        messages.error(request, first_error(form))
        return redirect("first_devs")
    try:
        key = wallet.create_key(
            user=request.user, kind=KeyKind.IDENTITY, label=form.cleaned_data["label"]
        )
    except wallet.WalletError as error:
        messages.error(request, str(error))
        return redirect("first_devs")
    messages.success(request, f"New identity key {key.label} created at {key.address}.")
    return redirect("first_devs")
