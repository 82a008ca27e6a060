from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("<str:sha256>", views.store_object, name="store_object"),
]
