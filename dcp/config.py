"""Where the scheduler is and where the DCP home folder (keystores) lives."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from .errors import DCPError

__all__ = ["client_socket_url", "dcp_home", "init", "portal_url", "scheduler_url"]

DEFAULT_SCHEDULER_URL = "http://127.0.0.1:8000"
CLIENT_SOCKET_PATH = "/ws/client/"

_configured_url: str | None = None


def init(url: str | None = None) -> str:
    """Choose the scheduler (the portal's URL) for later jobs and return it.

    Without `url`, the environment variable `DCP_SCHEDULER_URL` is used, else
    `http://127.0.0.1:8000`. An http(s) URL is the portal; its client socket is
    `ws(s)://host/ws/client/`.
    """
    global _configured_url
    chosen = url or os.environ.get("DCP_SCHEDULER_URL") or DEFAULT_SCHEDULER_URL
    _split(chosen)  # refuse a bad URL now rather than at exec()
    _configured_url = chosen
    return chosen


def scheduler_url() -> str:
    """The URL given to init(), else `DCP_SCHEDULER_URL`, else the local default."""
    return _configured_url or os.environ.get("DCP_SCHEDULER_URL") or DEFAULT_SCHEDULER_URL


def client_socket_url(url: str | None = None) -> str:
    """The websocket URL of the scheduler's client socket (`ws(s)://host/ws/client/`)."""
    scheme, host, path = _split(url or scheduler_url())
    if scheme in ("ws", "wss") and path not in ("", "/"):
        return f"{scheme}://{host}{path}"
    socket_scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    return f"{socket_scheme}://{host}{CLIENT_SOCKET_PATH}"


def portal_url(url: str | None = None) -> str:
    """The portal's web address (`http(s)://host`), for messages that point at its pages."""
    scheme, host, _ = _split(url or scheduler_url())
    web_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    return f"{web_scheme}://{host}"


def dcp_home() -> Path:
    """The `.dcp` folder holding the keystores: in `$DCP_HOMEDIR`, else in the home folder."""
    home = os.environ.get("DCP_HOMEDIR")
    return (Path(home) if home else Path.home()) / ".dcp"


def _split(url: str) -> tuple[str, str, str]:
    """(scheme, host[:port], path) of a scheduler URL, refusing anything else."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise DCPError(
            "EINVALID",
            f"scheduler URL {url!r} must look like http://host:port or https://host",
        )
    return scheme, parts.netloc, parts.path
