"""Private keys at rest: sealed with a key derived from the server secret.

A key may also carry an extra passphrase of its owner's: then the raw key is first encrypted
with a key stretched from that passphrase (scrypt + AES-GCM), and the result is sealed with the
server key. Without the passphrase the server alone cannot use such a key.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from django.conf import settings

_PLAIN = b"\x00"
_PASSPHRASE = b"\x01"
_SCRYPT_N = 2**14


class SealError(Exception):
    """The sealed key cannot be opened (wrong passphrase, or a changed server secret)."""


class WrongKeyPassphrase(SealError):
    pass


def _server_fernet() -> Fernet:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"dcp-portal wallet seal v1")
    return Fernet(base64.urlsafe_b64encode(hkdf.derive(settings.SECRET_KEY.encode())))


def _passphrase_key(passphrase: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=8, p=1).derive(passphrase.encode())


def seal(private_key: bytes, *, passphrase: str = "") -> bytes:
    """Encrypt a raw private key for storage, optionally under the owner's passphrase too."""
    if passphrase:
        salt, nonce = os.urandom(16), os.urandom(12)
        ciphertext = AESGCM(_passphrase_key(passphrase, salt)).encrypt(nonce, private_key, None)
        inner = _PASSPHRASE + salt + nonce + ciphertext
    else:
        inner = _PLAIN + private_key
    return _server_fernet().encrypt(inner)


def unseal(blob: bytes | memoryview, *, passphrase: str = "") -> bytes:
    """The raw private key of a sealed blob; WrongKeyPassphrase when the passphrase is wrong."""
    try:
        inner = _server_fernet().decrypt(bytes(blob))
    except InvalidToken:
        raise SealError("this key was sealed under another server secret") from None
    if inner[:1] == _PLAIN:
        return inner[1:]
    salt, nonce, ciphertext = inner[1:17], inner[17:29], inner[29:]
    try:
        return AESGCM(_passphrase_key(passphrase, salt)).decrypt(nonce, ciphertext, None)
    except InvalidTag:
        raise WrongKeyPassphrase("wrong passphrase for this key") from None
