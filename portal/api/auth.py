"""Who is calling: an API key (`Bearer`), an identity keystore and its passphrase (`Basic`), or
the portal's own pages with the signed-in session and its CSRF token.

Each resolves to a Principal: the portal user and the identity key the request acts as. The
session cookie alone is never enough: a request that relies on it must also send the CSRF
token in `X-CSRFToken`, on every method (not only the unsafe ones), so no other site can make
the API act for a signed-in user. Bearer and Basic requests need no token: a browser never
adds those headers by itself.

Basic runs the keystore's KDF, which is costly: a keystore opened with its passphrase is
remembered for BASIC_AUTH_VERIFIED_SECONDS (under an HMAC of both, never the passphrase), and
throttle.py limits failed attempts and the derivations running at once. Ninja runs this code in
the request's own thread (the views are sync; Django's ASGI handler gives each request a thread
of its own), so a derivation never holds up the event loop.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.utils.crypto import salted_hmac
from ninja.security.http import HttpAuthBase

from dcp.keys.keystore import KeystoreError, address_of, keystore_address, read_keystore
from portal.scheduler.selectors import identity_owner
from portal.users.models import User
from portal.wallet.digests import secret_matches
from portal.wallet.models import Key, KeyKind

from . import throttle
from .errors import ApiError
from .models import ApiKey

TOKEN_PATTERN = re.compile(r"dcp_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
# A keystore is well under 1 KiB; base64 of a generous one fits in 16 KiB.
MAX_AUTHORIZATION_CHARS = 16 * 1024
# Basic auth runs the keystore's KDF on every request: never more than the portal's own.
BASIC_MIN_SCRYPT_N_CAP = 2**15
LAST_USED_RESOLUTION = timedelta(minutes=1)
VERIFIED_KEY_SALT = "portal.api.auth.verified-keystore"


@dataclass(frozen=True)
class Principal:
    """The caller: a portal user acting as one of its identity keys."""

    user: User
    identity: str
    api_key: ApiKey | None = None


def _refused(message: str) -> ApiError:
    return ApiError(401, "EAUTH", message)


def _credentials(request: HttpRequest, scheme: str) -> str | None:
    """The credentials after `<scheme> ` in the Authorization header, or None for another."""
    header = request.headers.get("Authorization", "")
    name, _, credentials = header.partition(" ")
    if name.lower() != scheme:
        return None
    if len(header) > MAX_AUTHORIZATION_CHARS:
        raise _refused("the Authorization header is too large")
    return credentials.strip()


class ApiKeyBearer(HttpAuthBase):
    """`Authorization: Bearer dcp_<prefix>_<secret>`: an API key from the First Devs tab."""

    openapi_scheme = "bearer"
    openapi_description = "An API key created on the portal's First Devs tab."

    def __call__(self, request: HttpRequest) -> Principal | None:
        token = _credentials(request, "bearer")
        return None if token is None else authenticate_api_key(token)


def authenticate_api_key(token: str) -> Principal:
    match = TOKEN_PATTERN.fullmatch(token)
    key = (
        ApiKey.objects.select_related("user", "identity").filter(prefix=match.group(1)).first()
        if match
        else None
    )
    if (
        key is None
        or not secret_matches(key.digest, token)
        or not key.is_active
        or not key.user.is_active
    ):
        raise _refused("unknown or revoked API key")
    _note_use(key)
    return Principal(user=key.user, identity=key.identity.address, api_key=key)


def _note_use(key: ApiKey) -> None:
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)


class KeystoreBasic(HttpAuthBase):
    """dcp-rest's scheme: `Authorization: Basic base64(<id keystore JSON>:<passphrase>)`."""

    openapi_scheme = "basic"
    openapi_description = (
        "The identity keystore (id.keystore) JSON, a colon, and its passphrase, base64-encoded."
    )

    def __call__(self, request: HttpRequest) -> Principal | None:
        credentials = _credentials(request, "basic")
        return None if credentials is None else authenticate_keystore(request, credentials)


def authenticate_keystore(request: HttpRequest, credentials: str) -> Principal:
    keystore, passphrase = split_basic_credentials(credentials)
    try:
        identity = opened_address(request, keystore, passphrase)
    except KeystoreError as error:
        raise _refused(f"identity keystore refused: {error}") from None
    owner = identity_owner(identity)
    if owner is None or not owner.is_active:
        throttle.note_failure(request, identity)
        raise _refused("identity not registered: create one on the First Devs tab")
    return Principal(user=owner, identity=identity)


def opened_address(request: HttpRequest, keystore: dict[str, Any], passphrase: str) -> str:
    """The address of the key a keystore holds, opened with its passphrase (an identity
    keystore for Basic, an account keystore in a deploy's `account.json`).

    A keystore that opened is remembered for BASIC_AUTH_VERIFIED_SECONDS, so a client that
    repeats it runs no KDF; KeystoreError when it does not open.
    """
    remembered = verified_cache_key(keystore, passphrase)
    address = cache.get(remembered)
    if address is None:
        address = open_keystore(request, keystore, passphrase)
        cache.set(remembered, address, settings.BASIC_AUTH_VERIFIED_SECONDS)
    return str(address)


def open_keystore(request: HttpRequest, keystore: dict[str, Any], passphrase: str) -> str:
    """The address a keystore holds, found by running its KDF in one of the KDF slots.

    Refused without running the KDF when the client or the address the keystore claims is
    past its limit of failed attempts; a keystore that does not open counts as one, and
    raises KeystoreError.
    """
    claimed = _claimed_identity(keystore)
    throttle.check_failures(request, claimed)
    try:
        with throttle.kdf_slot():
            private_key = read_keystore(keystore, passphrase, **_kdf_caps())
    except KeystoreError:
        throttle.note_failure(request, claimed)
        raise
    return address_of(private_key)


def verified_cache_key(keystore: dict[str, Any], passphrase: str) -> str:
    """Where the identity of a keystore opened with this passphrase is remembered.

    An HMAC keyed with SECRET_KEY, so the cache holds neither the passphrase nor anything to
    test guesses against without that secret. Canonical JSON has no raw newline, so the
    newline marks where the passphrase starts.
    """
    text = json.dumps(keystore, sort_keys=True, separators=(",", ":")) + "\n" + passphrase
    digest = salted_hmac(VERIFIED_KEY_SALT, text, algorithm="sha256").hexdigest()
    return f"basic:verified:{digest}"


def _claimed_identity(keystore: dict[str, Any]) -> str | None:
    """The address the keystore says it holds (checked only once it opens), if any."""
    try:
        return keystore_address(keystore)
    except KeystoreError:
        return None


def split_basic_credentials(credentials: str) -> tuple[dict[str, Any], str]:
    """The keystore object and the passphrase of `base64(<keystore JSON>:<passphrase>)`.

    The keystore JSON has colons of its own, so it is read as one JSON value and the
    passphrase is whatever follows the colon after it (it may hold colons too).
    """
    try:
        text = base64.b64decode(credentials, validate=True).decode("utf-8")
        keystore, end = json.JSONDecoder().raw_decode(text)
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        raise _refused(
            "Basic credentials must be base64 of '<keystore JSON>:<passphrase>'"
        ) from None
    if not isinstance(keystore, dict) or text[end : end + 1] != ":":
        raise _refused("Basic credentials must be base64 of '<keystore JSON>:<passphrase>'")
    return keystore, text[end + 1 :]


def _kdf_caps() -> dict[str, int]:
    scrypt_n = max(settings.KEYSTORE_SCRYPT_N, BASIC_MIN_SCRYPT_N_CAP)
    return {
        "max_scrypt_n": scrypt_n,
        "max_scrypt_r": 8,
        "max_scrypt_p": 1,
        "max_scrypt_cost": scrypt_n * 8,
        "max_pbkdf2_c": 2**18,
    }


def authenticate_session(request: HttpRequest) -> Principal | None:
    """The signed-in user of a portal page, acting as their first identity key.

    A plain function rather than a Ninja security class, so that the OpenAPI schema offers
    programs only the two schemes meant for them. None without a signed-in session.
    """
    user = getattr(request, "user", None)
    if not isinstance(user, User) or not user.is_active:
        return None
    if csrf_refused(request):
        raise ApiError(
            403,
            "ECSRF",
            "a request signed in with the portal's session must send the csrftoken cookie's "
            "value in the X-CSRFToken header",
        )
    return Principal(user=user, identity=first_identity(user))


def first_identity(user: User) -> str:
    """The address a session deploys as: the user's oldest identity key."""
    key = Key.objects.filter(user=user, kind=KeyKind.IDENTITY).order_by("created_at", "pk").first()
    if key is None:
        raise ApiError(403, "ENOIDENTITY", "create an identity key on the First Devs tab")
    return key.address


def csrf_refused(request: HttpRequest) -> bool:
    """Whether Django's CSRF check (Origin, then the token) refuses the request.

    Django checks only unsafe methods; the API checks every one, so the request is put through
    the middleware as a POST. Django's test client turns the check off unless it is asked to
    enforce it, as it does for every other view.
    """
    check = CsrfViewMiddleware(_forbidden)
    method = request.method
    request.method = "POST"
    try:
        request.csrf_processing_done = False  # type: ignore[attr-defined]
        check.process_request(request)
        return check.process_view(request, _no_view, (), {}) is not None
    finally:
        request.method = method


def _forbidden(request: HttpRequest) -> HttpResponse:
    return HttpResponseForbidden()


def _no_view(request: HttpRequest) -> HttpResponse:  # pragma: no cover - never called
    return HttpResponseForbidden()
