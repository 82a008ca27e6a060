from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v0/", include("portal.api.urls")),
    path("store/", include("portal.store.urls")),
    path("", include("portal.web.urls")),
]
