"""Websocket routes: /ws/worker/ for worker tabs, /ws/client/ for deploying clients."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
