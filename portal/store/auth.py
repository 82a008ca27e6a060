"""Who stores an object: the user of an API key (the REST API's Bearer scheme, resolved by
portal/api/auth.py), or the owner of the identity key that signed the upload.

A signed upload carries `X-DCP-Identity` (the identity's address), `X-DCP-Expires` (unix
seconds) and `X-DCP-Signature`, the identity key's EIP-191 signature over
`upload_text(sha256, size, expires)` (dcp/protocol/signed.py). It is refused once expired, and
when it expires further ahead than MAX_UPLOAD_SIGNATURE_SECONDS. The session cookie is never
enough: the store's PUT takes no CSRF token.
"""

from __future__ import annotations

import re
import time

from django.http import HttpRequest

from dcp.protocol.signed import MAX_UPLOAD_SIGNATURE_SECONDS, recover_signer, upload_text
from portal.api.auth import ApiKeyBearer
from portal.scheduler.selectors import identity_owner
from portal.users.models import User

from .errors import StoreError

IDENTITY_HEADER = "X-DCP-Identity"
SIGNATURE_HEADER = "X-DCP-Signature"
EXPIRES_HEADER = "X-DCP-Expires"
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
HOW_TO_AUTHENTICATE = (
    "send 'Authorization: Bearer <API key>' (create one on the First Devs tab), or "
    f"{IDENTITY_HEADER}, {EXPIRES_HEADER} and {SIGNATURE_HEADER} signed by your identity key"
)


def uploader(request: HttpRequest, *, sha256: str, size: int) -> User:
    """The user storing `size` bytes as `sha256`: 401 without valid credentials, 403 for a
    user who has not joined First Devs (only they deploy jobs)."""
    principal = ApiKeyBearer()(request)  # ApiError 401 for an unknown or revoked key
    user = principal.user if principal is not None else _signer(request, sha256, size)
    if user.first_dev_since is None:
        raise StoreError(
            403, "ENOTFIRSTDEV", "join First Devs on the portal's First Devs tab to store data"
        )
    return user


def _signer(request: HttpRequest, sha256: str, size: int) -> User:
    """The owner of the identity key whose signature the upload's headers carry."""
    identity = request.headers.get(IDENTITY_HEADER, "")
    if not identity:
        raise _refused(HOW_TO_AUTHENTICATE)
    expires = _expiry(request.headers.get(EXPIRES_HEADER, ""))
    signature = request.headers.get(SIGNATURE_HEADER, "")
    signer = recover_signer(upload_text(sha256, size, expires), signature)
    if signer is None or signer.lower() != identity.lower():
        raise _refused(
            f"the signature does not recover to {IDENTITY_HEADER} over this upload's hash, "
            "size and expiry"
        )
    owner = identity_owner(signer)
    if owner is None or not owner.is_active:
        raise _refused("identity not registered: create one on the First Devs tab")
    return owner


def _expiry(text: str) -> int:
    """The signature's expiry, refused when past or too far ahead."""
    if not _UNIX_SECONDS.fullmatch(text):
        raise _refused(f"{EXPIRES_HEADER} must say when the signature expires, in unix seconds")
    expires, now = int(text), time.time()
    if expires <= now:
        raise _refused("the upload signature expired: sign the upload again")
    if expires > now + MAX_UPLOAD_SIGNATURE_SECONDS:
        raise _refused(
            f"the upload signature expires more than {MAX_UPLOAD_SIGNATURE_SECONDS} s from now"
        )
    return expires


def _refused(message: str) -> StoreError:
    return StoreError(401, "EAUTH", message)
