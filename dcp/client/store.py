"""Uploads to the portal's content-addressed store (docs/store.md), before the frames that need
them.

Every blob a `deploy` or `add_slices` frame references is stored for the deploying identity
before the frame is sent: `HEAD /store/<sha256>` first; an object the store has already is
only claimed (an empty `PUT`, so the scheduler lets this identity's jobs use it), any other is
sent whole. Each `PUT` is signed by the identity key (`upload_text`, dcp/protocol/signed.py).
A blob is uploaded once per process, portal and identity. Network trouble is tried again with
the client's backoff; a refusal is DCPError with the store's error code (`ETOOLARGE`, `EQUOTA`,
`EHASHMISMATCH`, ...).

`read_blob` is the other way: a stored object's bytes (`GET /store/<sha256>`, which anyone may
do), checked against the hash that names them; results too big for a frame come back this way.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any, BinaryIO

from ..config import portal_url
from ..errors import DCPError
from ..keys.keystore import address_of
from ..protocol.signed import UPLOAD_SIGNATURE_SECONDS, sign_text, upload_text
from ..protocol.values import BlobRef, references
from .blobs import known_blob
from .connection import Backoff, ConnectionLost, Frame

__all__ = ["STORE_PATH", "Store", "read_blob", "upload_referenced"]

STORE_PATH = "/store/"
REQUEST_TIMEOUT_S = 300.0  # a large object on a slow link
# (store, identity, sha256) of the blobs this process has stored: never sent twice.
_stored: set[tuple[str, str, str]] = set()


def upload_referenced(
    url: str, identity_key: bytes, frame: Frame, give_up_s: float | None = None
) -> None:
    """Store every blob referenced by a deploy's arguments and input values, or by an
    add_slices batch, for the identity `identity_key`, at the portal of `url`; network trouble
    is retried with backoff (ENOCONNECTION after `give_up_s`, about a minute by default)."""
    parts = [frame.get("args", []), frame.get("values", []), frame.get("input", {}).get("values")]
    refs = references(parts)
    backoff = Backoff(url, give_up_s)
    while refs:
        try:
            Store(url, identity_key).upload(refs)
            return
        except ConnectionLost as lost:
            backoff.wait(lost)


def read_blob(url: str, ref: BlobRef, give_up_s: float | None = None) -> bytes:
    """The bytes of the stored object `ref` names, from the store of the portal at `url`,
    checked against its SHA-256 and size (EHASHMISMATCH otherwise); network trouble is retried
    with backoff, a missing object is ENOTFOUND."""
    request = urllib.request.Request(portal_url(url) + STORE_PATH + ref.sha256)  # noqa: S310 - http(s) only
    backoff = Backoff(url, give_up_s)
    while True:
        try:
            data = _answer(request, ref.sha256)
            break
        except ConnectionLost as lost:
            backoff.wait(lost)
    digest = hashlib.sha256(data).hexdigest()
    if digest != ref.sha256 or len(data) != ref.size:
        raise DCPError(
            "EHASHMISMATCH",
            f"the portal's store sent {len(data)} bytes hashing to {digest} for blob "
            f"{ref.sha256} ({ref.size} bytes)",
        )
    return data


class Store:
    """The store of the portal at `url` (its web or its socket address), as an identity."""

    def __init__(self, url: str, identity_key: bytes) -> None:
        self.base = portal_url(url) + STORE_PATH
        self.identity_key = identity_key
        self.identity = address_of(identity_key)

    def upload(self, refs: Iterable[BlobRef]) -> None:
        """Store each referenced blob for this identity, unless this process did already."""
        for ref in refs:
            done = (self.base, self.identity, ref.sha256)
            if done not in _stored:
                self._upload(ref)
                _stored.add(done)

    def _upload(self, ref: BlobRef) -> None:
        if self.has(ref.sha256):
            self.put(ref, None)  # claimed: the bytes stay here
            return
        with known_blob(ref).open() as body:
            self.put(ref, body)

    def has(self, sha256: str) -> bool:
        """Whether the store has the object `sha256` (anyone's)."""
        try:
            self._send(self._request("HEAD", sha256), sha256)
        except DCPError as error:
            if error.code == "ENOTFOUND":
                return False
            raise
        return True

    def put(self, ref: BlobRef, body: BinaryIO | None) -> None:
        """Send the object's bytes (`body`), or with None claim one the store has."""
        size = ref.size if body is not None else 0
        headers = {**self._signature(ref), "Content-Length": str(size)}
        headers["Content-Type"] = "application/octet-stream"
        data: Any = body if body is not None else b""
        self._send(self._request("PUT", ref.sha256, data, headers), ref.sha256)

    def _request(
        self, method: str, sha256: str, data: Any = None, headers: dict[str, str] | None = None
    ) -> urllib.request.Request:
        url = self.base + sha256  # http(s) only: dcp.config refuses other schemes
        return urllib.request.Request(url, data, headers or {}, method=method)  # noqa: S310

    def _signature(self, ref: BlobRef) -> dict[str, str]:
        expires = int(time.time()) + UPLOAD_SIGNATURE_SECONDS
        text = upload_text(ref.sha256, ref.size, expires)
        return {
            "X-DCP-Identity": self.identity,
            "X-DCP-Expires": str(expires),
            "X-DCP-Signature": sign_text(self.identity_key, text),
        }

    def _send(self, request: urllib.request.Request, sha256: str) -> None:
        _answer(request, sha256)


def _answer(request: urllib.request.Request, sha256: str) -> bytes:
    """The body of the store's answer to `request`; DCPError for a refusal, ConnectionLost for
    trouble worth another try."""
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:  # noqa: S310 - the portal's http(s) URL
            return response.read()  # type: ignore[no-any-return]
    except urllib.error.HTTPError as error:
        raise _refusal(error, sha256) from None
    except (urllib.error.URLError, OSError) as error:
        raise ConnectionLost(f"the portal's store at {request.full_url}: {error}") from error


def _refusal(error: urllib.error.HTTPError, sha256: str) -> Exception:
    """The store's answer as DCPError (its code and message); a server error or a proxy's
    answer as ConnectionLost, worth another try."""
    try:
        detail = json.loads(error.read() or b"{}").get("error", {})
    except (ValueError, AttributeError):
        detail = {}
    if not isinstance(detail, dict):
        detail = {}
    if error.code == 404 and "code" not in detail:  # a HEAD's answer has no body
        return DCPError("ENOTFOUND", f"the portal's store has no object {sha256}")
    if error.code >= 500 or "code" not in detail:
        return ConnectionLost(f"the portal's store answered HTTP {error.code} for {sha256}")
    message = detail.get("message", "")
    return DCPError(str(detail["code"]), f"the portal's store refused blob {sha256}: {message}")
