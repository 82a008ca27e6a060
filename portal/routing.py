"""Websocket routes: /ws/worker/ for worker tabs, /ws/client/ for deploying clients.

The worker socket trusts the session cookie, so its Origin must be one of ALLOWED_HOSTS (a
page elsewhere must not borrow a signed-in person's session). The client socket trusts only
the signed challenge, so any program may open it, with or without an Origin.
"""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from portal.scheduler.consumers import ClientConsumer, WorkerConsumer

websocket_urlpatterns = [
    path("ws/client/", ClientConsumer.as_asgi()),
    path(
        "ws/worker/",
        AllowedHostsOriginValidator(AuthMiddlewareStack(WorkerConsumer.as_asgi())),
    ),
]
