"""Websocket routes: /ws/worker/ for worker tabs, /ws/client/ for deploying clients."""

from __future__ import annotations

from django.urls import path

from portal.scheduler.consumers import ClientConsumer, WorkerConsumer

websocket_urlpatterns = [
    path("ws/client/", ClientConsumer.as_asgi()),
    path("ws/worker/", WorkerConsumer.as_asgi()),
]
