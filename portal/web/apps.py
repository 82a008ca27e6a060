from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


class WebConfig(AppConfig):
    name = "portal.web"
    label = "web"

    def ready(self) -> None:
        checks.register(check_embed_origins)


def check_embed_origins(**_: Any) -> list[checks.CheckMessage]:
    """A malformed WORKER_EMBED_ORIGINS fails when the portal starts (manage.py check, migrate,
    serve), not on the first request that reads it (which may be the Worker tab's)."""
    from .worker_files import embed_origins

    try:
        embed_origins()
    except ImproperlyConfigured as error:
        return [checks.Error(str(error), id="web.E001")]
    return []
