from __future__ import annotations

from django.apps import AppConfig


class StoreConfig(AppConfig):
    name = "portal.store"
    label = "store"
    verbose_name = "Content-addressed store"
