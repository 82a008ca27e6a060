"""The admin: users, and a login form that counts failed passwords as allauth's login page does."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import get_adapter
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import ValidationError
from django.views.decorators.debug import sensitive_variables

from .models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = ("email", "is_active", "first_dev_since", "date_joined", "is_staff")
    search_fields = ("email",)
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Program", {"fields": ("first_dev_since",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    """The admin's login form, checking passwords through allauth's adapter.

    Django's own form calls authenticate() with no limit; allauth's adapter first counts the
    attempt against the client IP and the email (settings.ACCOUNT_RATE_LIMITS["login_failed"],
    the counters its login page uses) and refuses without checking the password past them.
    """

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "too_many_login_attempts": "Too many failed login attempts: try again in %(minutes)s "
        "minutes.",
    }

    @sensitive_variables()
    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is not None and password:
            self.user_cache = self._authenticate(username, password)
            if self.user_cache is None:
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data

    @sensitive_variables("password")
    def _authenticate(self, username: str, password: str) -> Any:
        try:
            return get_adapter(self.request).authenticate(
                self.request, username=username, password=password
            )
        except ValidationError as error:
            if error.code != "too_many_login_attempts":
                raise
            raise ValidationError(
                self.error_messages["too_many_login_attempts"],
                code="too_many_login_attempts",
                params={"minutes": settings.LOGIN_FAILURE_MINUTES},
            ) from None


admin.site.login_form = ThrottledAdminLoginForm
