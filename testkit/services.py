"""Whether the optional services (PostgreSQL, Redis) answer at a URL: the suite's PostgreSQL and
Redis pass and the benchmarks' second backend run only when they do."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit


def answers(url: str) -> bool:
    """Whether something accepts connections at the host and port of `url`."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2):
            return True
    except OSError:
        return False
