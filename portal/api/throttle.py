"""What stops Basic sign-ins from wearing the server out: failure limits and key-derivation slots.

Opening a keystore runs its KDF (scrypt: tens of megabytes and a fraction of a CPU second), so
guessing passphrases or sending keystores of unknown identities costs the server far more than
the caller. Two brakes, both set in settings.py's "Throttling" block:

- Failed attempts are counted per client IP and per identity address (the one the keystore
  says it holds, else the one it opened to) in the Django cache, shared by every process when
  REDIS_URL is set. Past a limit the keystore is not opened at all: 429 with Retry-After.
- At most BASIC_AUTH_KDF_SLOTS derivations run at once. A sign-in waits for a free slot in its
  own request thread (never on the event loop) and is answered 503 if none frees in time, so
  the other cores stay free for everyone else.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from allauth.account.adapter import get_adapter
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from .errors import ApiError

# IPv6 clients are counted per /64, as allauth counts them: one host usually holds a whole /64.
IPV6_PREFIX = 64


class Throttled(ApiError):
    """429: too many failed attempts; the next one is heard in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            429,
            "ETHROTTLED",
            f"too many failed keystore sign-ins from this address or for this identity: "
            f"try again in {retry_after} s, or use an API key",
        )
        self.headers = {"Retry-After": str(retry_after)}


class Busy(ApiError):
    """503: every key-derivation slot stayed taken while this sign-in waited."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "EBUSY",
            "the server is opening too many keystores at once: retry shortly, or use an API key",
        )
        self.headers = {"Retry-After": "1"}


def check_failures(request: HttpRequest, identity: str | None) -> None:
    """Raise Throttled if the client or the identity is past its limit of failed attempts."""
    now = time.time()
    counters = _counters(request, identity)
    values = cache.get_many([name for key, _, _ in counters for name in (key, f"{key}:ends")])
    waits = [
        max(1, math.ceil(values.get(f"{key}:ends", now + seconds) - now))
        for key, limit, seconds in counters
        if values.get(key, 0) >= limit
    ]
    if waits:
        raise Throttled(max(waits))


def note_failure(request: HttpRequest, identity: str | None) -> None:
    """Count one failed attempt against the client and, when known, the identity."""
    for key, _, seconds in _counters(request, identity):
        _count(key, seconds)


def _count(key: str, seconds: int) -> None:
    """Add one to a counter whose window opens with its first failure and lasts `seconds`.

    add() and incr() are atomic on every cache backend, and incr() keeps the expiry.
    """
    for _ in range(2):  # a second time only if the window ended between add() and incr()
        if cache.add(key, 1, seconds):
            cache.set(f"{key}:ends", time.time() + seconds, seconds)
            return
        try:
            cache.incr(key)
            return
        except ValueError:
            continue


def _counters(request: HttpRequest, identity: str | None) -> list[tuple[str, int, int]]:
    """(cache key, limit, seconds) of each failure counter that applies to this attempt."""
    sources = {"client": client_network(request), "identity": identity}
    counters = []
    for scope, (limit, seconds) in settings.BASIC_AUTH_FAILURE_LIMITS.items():
        source = sources[scope]
        if source is not None:
            digest = hashlib.sha256(source.lower().encode()).hexdigest()[:32]
            counters.append((f"throttle:basic:{scope}:{digest}", limit, seconds))
    return counters


def client_network(request: HttpRequest) -> str:
    """The client's IP as allauth sees it (its trusted-proxy settings apply), IPv6 per /64."""
    try:
        ip = get_adapter(request).get_client_ip(request)
    except PermissionDenied:  # no address at all: count every such client together
        return "unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX}", strict=False).network_address)
    return ip


@contextmanager
def kdf_slot() -> Iterator[None]:
    """Hold one of BASIC_AUTH_KDF_SLOTS while a keystore is opened; Busy if none frees in time."""
    slots = _slots(settings.BASIC_AUTH_KDF_SLOTS)
    if not slots.acquire(timeout=settings.BASIC_AUTH_KDF_WAIT_SECONDS):
        raise Busy()
    try:
        yield
    finally:
        slots.release()


_semaphores: dict[int, threading.BoundedSemaphore] = {}
_semaphores_lock = threading.Lock()


def _slots(count: int) -> threading.BoundedSemaphore:
    """The process's semaphore of `count` slots (one per count, so a changed setting applies)."""
    with _semaphores_lock:
        return _semaphores.setdefault(count, threading.BoundedSemaphore(count))
