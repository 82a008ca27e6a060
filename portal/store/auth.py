"""Who stores an object: the user of an API key (the REST API's Bearer scheme, resolved by
portal/api/auth.py), the owner of the identity key that signed the upload, the signed-in user
of one of the portal's own pages, or, for a worker's upload of a big result, the owner of the
job the worker computes.

A signed upload carries `X-DCP-Identity` (the identity's address), `X-DCP-Expires` (unix
seconds) and `X-DCP-Signature`, the identity key's EIP-191 signature over
`upload_text(sha256, size, expires)` (dcp/protocol/signed.py). It is refused once expired, and
when it expires further ahead than MAX_UPLOAD_SIGNATURE_SECONDS.

A portal page (dcp-client.js, deploying with the session) stores with the session cookie and
the csrftoken cookie's value in `X-CSRFToken`. The session cookie alone is never enough: the
view is csrf_exempt (the other credentials are headers no browser adds by itself), so Django's
CSRF check (Origin, then the token) is run here, for the session only.

A worker has no key of its own: each task the scheduler hands it carries an upload ticket
(`upload_ticket`, signed with the portal's secret), bound to the worker's connection, its user
and the task's job, and good for MAX_SLICE_SECONDS and a grace period (any slice of the task
ends by then). A worker sends it as `Authorization: DCP-Worker <ticket>`; the object is then
stored for the job's owner (it is their job's result, within their quota), and only while that
worker connection holds a live lease on a slice of that job.
"""

from __future__ import annotations

import re
import time
from typing import Any

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.middleware.csrf import CsrfViewMiddleware

from dcp.protocol.signed import MAX_UPLOAD_SIGNATURE_SECONDS, recover_signer, upload_text
from portal.api.auth import ApiKeyBearer
from portal.scheduler.selectors import identity_owner, owner_of_leased_job
from portal.users.models import User

from .errors import StoreError

IDENTITY_HEADER = "X-DCP-Identity"
SIGNATURE_HEADER = "X-DCP-Signature"
EXPIRES_HEADER = "X-DCP-Expires"
WORKER_SCHEME = "DCP-Worker"
TICKET_SALT = "portal.store.worker-upload-ticket"
TICKET_GRACE_SECONDS = 600  # beyond MAX_SLICE_SECONDS: the result of a task's last slice is sent
MAX_TICKET_CHARS = 1000
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
HOW_TO_AUTHENTICATE = (
    "send 'Authorization: Bearer <API key>' (create one on the First Devs tab), or "
    f"{IDENTITY_HEADER}, {EXPIRES_HEADER} and {SIGNATURE_HEADER} signed by your identity key, "
    "or, from the portal's own pages, the signed-in session with its X-CSRFToken"
)
CSRF_REFUSED = (
    "a PUT signed in with the portal's session must come from the portal's own pages and send "
    "the csrftoken cookie's value in the X-CSRFToken header"
)


def upload_ticket(*, worker: str, user_id: int, job_id: str) -> str:
    """A worker's credential to store results of one job: bound to its connection `worker`,
    its user and the job; good for ticket_seconds()."""
    return signing.dumps({"w": worker, "u": user_id, "j": job_id}, salt=TICKET_SALT)


def ticket_seconds() -> int:
    """How long an upload ticket is good for: longer than any slice of its task may run."""
    return int(settings.MAX_SLICE_SECONDS) + TICKET_GRACE_SECONDS


def uploader(request: HttpRequest, *, sha256: str, size: int) -> User:
    """The user storing `size` bytes as `sha256`: 401 without valid credentials, 403 for a
    session without its CSRF token, for a user who has not joined First Devs (only they deploy
    jobs), or for a worker's ticket while the worker holds no slice of the ticket's job."""
    user = _credited_user(request, sha256, size)
    if user.first_dev_since is None:
        raise StoreError(
            403, "ENOTFIRSTDEV", "join First Devs on the portal's First Devs tab to store data"
        )
    return user


def _credited_user(request: HttpRequest, sha256: str, size: int) -> User:
    """The user the request's credentials name, tried in this order: a worker's ticket, an
    API key, the identity key's signature (its headers), the session (with its CSRF token)."""
    ticket = _worker_ticket(request)
    if ticket is not None:
        return _job_owner(ticket)
    principal = ApiKeyBearer()(request)  # ApiError 401 for an unknown or revoked key
    if principal is not None:
        return principal.user
    if not request.headers.get(IDENTITY_HEADER):
        user = _session_user(request)
        if user is not None:
            return user
    return _signer(request, sha256, size)


def _session_user(request: HttpRequest) -> User | None:
    """The signed-in user of a portal page, once the PUT passes Django's CSRF check (403
    ECSRF otherwise); None without a signed-in session."""
    user = getattr(request, "user", None)
    if not isinstance(user, User) or not user.is_active:
        return None
    if _csrf_refused(request):
        raise StoreError(403, "ECSRF", CSRF_REFUSED)
    return user


def _csrf_refused(request: HttpRequest) -> bool:
    """Whether Django's CSRF check refuses this PUT: an Origin other than the portal's, or no
    X-CSRFToken matching the csrftoken cookie. A PUT is checked as it is (Django protects
    every unsafe method), which never reads the body: the store streams it afterwards. Django's
    test client turns the check off unless asked to enforce it, as for every other view."""
    check = CsrfViewMiddleware(_forbidden)
    request.csrf_processing_done = False  # type: ignore[attr-defined] # checked here, not skipped
    check.process_request(request)  # reads the csrftoken cookie
    return check.process_view(request, _forbidden, (), {}) is not None


def _forbidden(request: HttpRequest, reason: str = "") -> HttpResponse:
    return HttpResponseForbidden()


def _worker_ticket(request: HttpRequest) -> str | None:
    """The ticket of `Authorization: DCP-Worker <ticket>`, or None for any other header."""
    scheme, _, ticket = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != WORKER_SCHEME.lower():
        return None
    if len(ticket) > MAX_TICKET_CHARS:
        raise _refused("the upload ticket is too long")
    return ticket.strip()


def _job_owner(ticket: str) -> User:
    """The owner of the job a worker's ticket names, while the worker holds one of its slices."""
    claims = _ticket_claims(ticket)
    owner = owner_of_leased_job(worker=claims["w"], user_id=claims["u"], job_id=claims["j"])
    if owner is None or not owner.is_active:
        raise StoreError(
            403,
            "ENOTLEASED",
            f"this worker holds no slice of job {claims['j']} now: only a worker computing a "
            "job stores its results",
        )
    return owner


def _ticket_claims(ticket: str) -> dict[str, Any]:
    try:
        claims = signing.loads(ticket, salt=TICKET_SALT, max_age=ticket_seconds())
    except signing.SignatureExpired:
        raise _refused(
            "the upload ticket expired: the worker's latest task has a newer one"
        ) from None
    except signing.BadSignature:
        raise _refused("not an upload ticket of this portal") from None
    if not isinstance(claims, dict) or set(claims) != {"w", "u", "j"}:
        raise _refused("not an upload ticket of this portal")
    return claims


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
