"""Forms of the portal pages: they parse and validate, services do the work."""

from __future__ import annotations

import uuid

from django import forms

from dcp.protocol.credits import AmountError, to_units
from portal.scheduler.models import GROUP_NAME_LENGTH, WORKER_TOKEN_NAME_LENGTH
from portal.wallet.services import WalletError, normalise_address, validate_label


class LabelForm(forms.Form):
    label = forms.CharField(max_length=40)

    def clean_label(self) -> str:
        try:
            return validate_label(self.cleaned_data["label"])
        except WalletError as error:
            raise forms.ValidationError(str(error)) from None


class KeystoreDownloadForm(forms.Form):
    file_passphrase = forms.CharField(required=False, strip=False, max_length=1024)
    key_passphrase = forms.CharField(required=False, strip=False, max_length=1024)


class ChangePassphraseForm(forms.Form):
    current = forms.CharField(required=False, strip=False, max_length=1024)
    new = forms.CharField(required=False, strip=False, max_length=1024)
    confirm = forms.CharField(required=False, strip=False, max_length=1024)

    def clean(self) -> dict[str, str]:
        data = super().clean() or {}
        if data.get("new", "") != data.get("confirm", ""):
            raise forms.ValidationError("The new passphrase and its confirmation differ.")
        return data


class TransferForm(forms.Form):
    source = forms.CharField(max_length=42)
    target = forms.CharField(max_length=44)
    amount = forms.CharField(max_length=32)
    key_passphrase = forms.CharField(required=False, strip=False, max_length=1024)
    request_id = forms.UUIDField(initial=uuid.uuid4)

    def clean_target(self) -> str:
        try:
            return normalise_address(self.cleaned_data["target"])
        except WalletError as error:
            raise forms.ValidationError(str(error)) from None

    def clean_amount(self) -> int:
        try:
            units = to_units(self.cleaned_data["amount"])
        except AmountError as error:
            raise forms.ValidationError(str(error)) from None
        if units <= 0:
            raise forms.ValidationError("Send a positive number of credits.")
        return units


class ComputeGroupForm(forms.Form):
    name = forms.CharField(max_length=GROUP_NAME_LENGTH)


class WorkerTokenForm(forms.Form):
    name = forms.CharField(max_length=WORKER_TOKEN_NAME_LENGTH)


def first_error(form: forms.Form) -> str:
    """The first validation message of a form, for a one-line flash message."""
    for errors in form.errors.values():
        return str(errors[0])
    return "The form is not valid."
