"""Ethereum V3 keystores: the files that hold one identity key or account key.

A keystore is a JSON document whose private key is encrypted with AES-128-CTR under a key
derived from a passphrase (scrypt or PBKDF2-HMAC-SHA256) and authenticated by a keccak256 MAC.
Reading one may happen on the server with a file a stranger uploaded, so the KDF parameters are
checked against caps before any key derivation runs: a hostile file cannot make us burn
gigabytes of memory or minutes of CPU.

This module is part of the client SDK and must not import Django.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from Crypto.Protocol.KDF import scrypt as pycryptodome_scrypt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from eth_keys import keys
from eth_utils import keccak, to_checksum_address

__all__ = [
    "KeystoreError",
    "address_of",
    "create_keystore",
    "keystore_address",
    "load_keystore_file",
    "read_keystore",
    "save_keystore_file",
]

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
PRIVATE_KEY_LENGTH = 32
DKLEN = 32
IV_LENGTH = 16
SALT_LENGTH = 32
MAX_SALT_LENGTH = 1024
# A real keystore is well under 1 KiB; the cap only stops a huge upload from being parsed.
MAX_KEYSTORE_BYTES = 64 * 1024

_HEX_RE = re.compile(r"(?:0x)?((?:[0-9a-fA-F]{2})*)")
_ADDRESS_RE = re.compile(r"(?:0x)?([0-9a-fA-F]{40})")


class KeystoreError(ValueError):
    """A keystore could not be created, parsed or decrypted; the message says why."""


@dataclass(frozen=True)
class _KdfCaps:
    """The most work a keystore may ask of us before we agree to run its KDF."""

    scrypt_n: int
    scrypt_r: int
    scrypt_p: int
    scrypt_cost: int
    pbkdf2_c: int


# --------------------------------------------------------------------------- public API


def address_of(private_key: bytes) -> str:
    """Return the EIP-55 checksummed address of a secp256k1 private key."""
    _check_private_key(private_key)
    return keys.PrivateKey(bytes(private_key)).public_key.to_checksum_address()


def create_keystore(
    private_key: bytes,
    passphrase: str,
    *,
    label: str | None = None,
    scrypt_n: int = 2**14,
    scrypt_r: int = 8,
    scrypt_p: int = 1,
) -> dict[str, Any]:
    """Encrypt a private key into a V3 keystore dict (scrypt, aes-128-ctr).

    An empty passphrase is allowed and means "no passphrase".
    """
    _check_private_key(private_key)
    _check_scrypt_shape(scrypt_n, scrypt_r, scrypt_p)
    if label is not None and not isinstance(label, str):
        raise KeystoreError("keystore label must be a string")
    salt, iv = os.urandom(SALT_LENGTH), os.urandom(IV_LENGTH)
    derived = _scrypt(_encode_passphrase(passphrase), salt, scrypt_n, scrypt_r, scrypt_p)
    ciphertext = _aes_128_ctr(derived[:16], iv, private_key)
    keystore: dict[str, Any] = {
        "version": 3,
        "id": str(uuid.uuid4()),
        "address": _address_of_lower(private_key),
        "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": iv.hex()},
            "ciphertext": ciphertext.hex(),
            "kdf": "scrypt",
            "kdfparams": {
                "dklen": DKLEN,
                "n": scrypt_n,
                "r": scrypt_r,
                "p": scrypt_p,
                "salt": salt.hex(),
            },
            "mac": _mac(derived, ciphertext).hex(),
        },
    }
    if label is not None:
        keystore["label"] = label
    return keystore


def read_keystore(
    data: dict[str, Any] | str | bytes,
    passphrase: str,
    *,
    max_scrypt_n: int = 2**18,
    max_scrypt_r: int = 8,
    max_scrypt_p: int = 16,
    max_scrypt_cost: int = 2**21,
    max_pbkdf2_c: int = 2**18,
) -> bytes:
    """Decrypt a V3 keystore (dict or JSON text) and return its 32-byte private key.

    KDF parameters above the caps are refused before any derivation runs. `max_scrypt_cost`
    caps n*r*p (the CPU work); the defaults accept geth's "standard" parameters
    (n=2**18, r=8, p=1) and the official V3 test vectors.
    """
    caps = _KdfCaps(max_scrypt_n, max_scrypt_r, max_scrypt_p, max_scrypt_cost, max_pbkdf2_c)
    document = _parse_document(data)
    crypto = _crypto_section(document)
    _check_cipher(crypto)
    iv = _hex_field(crypto.get("cipherparams"), "iv", "crypto.cipherparams", length=IV_LENGTH)
    ciphertext = _hex_field(crypto, "ciphertext", "crypto", length=PRIVATE_KEY_LENGTH)
    mac = _hex_field(crypto, "mac", "crypto", length=32)
    expected_address = _optional_address(document)
    derived = _derive_key(crypto, _encode_passphrase(passphrase), caps)
    if not hmac.compare_digest(_mac(derived, ciphertext), mac):
        raise KeystoreError("wrong passphrase for this keystore (or the file is corrupted)")
    private_key = _aes_128_ctr(derived[:16], iv, ciphertext)
    _check_decrypted_key(private_key, expected_address)
    return private_key


def keystore_address(data: dict[str, Any] | str | bytes) -> str:
    """Return the EIP-55 address a keystore says it holds, without decrypting it."""
    address = _optional_address(_parse_document(data))
    if address is None:
        raise KeystoreError("keystore has no 'address' field")
    return to_checksum_address("0x" + address)


def load_keystore_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a keystore file from disk into a dict (not decrypted yet)."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_KEYSTORE_BYTES + 1)
    except FileNotFoundError:
        raise KeystoreError(f"keystore file not found: {file}") from None
    except OSError as exc:
        raise KeystoreError(f"cannot read keystore file {file}: {exc.strerror}") from None
    return _parse_document(raw)


def save_keystore_file(
    path: str | os.PathLike[str], keystore: dict[str, Any], *, overwrite: bool = False
) -> Path:
    """Write a keystore dict to disk, readable by its owner only (mode 0600)."""
    file = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        descriptor = os.open(file, flags, 0o600)
    except FileExistsError:
        raise KeystoreError(f"keystore file already exists: {file}") from None
    except OSError as exc:
        raise KeystoreError(f"cannot write keystore file {file}: {exc.strerror}") from None
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(keystore, handle, indent=2)
        handle.write("\n")
    return file


# --------------------------------------------------------------------------- parsing


def _parse_document(data: object) -> dict[str, Any]:
    """Turn a dict or JSON text into a keystore dict with a supported version."""
    document = _json_object(data) if isinstance(data, str | bytes | bytearray) else data
    if not isinstance(document, dict):
        raise KeystoreError("not a V3 keystore: expected a JSON object")
    if "version" not in document:
        raise KeystoreError("not a V3 keystore: missing 'version'")
    version = document["version"]
    if type(version) is not int or version != 3:
        raise KeystoreError(f"unsupported keystore version {version!r} (only version 3 is read)")
    return document


def _json_object(text: str | bytes | bytearray) -> object:
    """Parse keystore JSON text, refusing anything implausibly large."""
    if len(text) > MAX_KEYSTORE_BYTES:
        raise KeystoreError(f"keystore is too large (over {MAX_KEYSTORE_BYTES} bytes)")
    try:
        return json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise KeystoreError(f"keystore is not valid JSON: {exc}") from None


def _crypto_section(document: dict[str, Any]) -> dict[str, Any]:
    """Return the 'crypto' object (older files spell it 'Crypto')."""
    crypto = document.get("crypto", document.get("Crypto"))
    if crypto is None:
        raise KeystoreError("not a V3 keystore: missing 'crypto'")
    if not isinstance(crypto, dict):
        raise KeystoreError("not a V3 keystore: 'crypto' must be an object")
    return crypto


def _check_cipher(crypto: dict[str, Any]) -> None:
    cipher = crypto.get("cipher")
    if cipher is None:
        raise KeystoreError("not a V3 keystore: missing 'crypto.cipher'")
    if cipher != "aes-128-ctr":
        raise KeystoreError(f"unsupported cipher {_short(cipher)} (only aes-128-ctr)")


def _hex_field(
    section: object, name: str, where: str, *, length: int | None = None, max_length: int = 0
) -> bytes:
    """Read section[name] as hex bytes, optionally of an exact or bounded length."""
    if not isinstance(section, dict):
        raise KeystoreError(f"not a V3 keystore: missing '{where}'")
    value = section.get(name)
    if value is None:
        raise KeystoreError(f"not a V3 keystore: missing '{where}.{name}'")
    match = _HEX_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise KeystoreError(f"malformed hex in '{where}.{name}'")
    raw = bytes.fromhex(match.group(1))
    if length is not None and len(raw) != length:
        raise KeystoreError(f"'{where}.{name}' must be {length} bytes, got {len(raw)}")
    if max_length and not 0 < len(raw) <= max_length:
        raise KeystoreError(f"'{where}.{name}' must be 1 to {max_length} bytes, got {len(raw)}")
    return raw


def _int_field(params: dict[str, Any], name: str) -> int:
    value = params.get(name)
    if value is None:
        raise KeystoreError(f"not a V3 keystore: missing 'crypto.kdfparams.{name}'")
    if type(value) is not int:
        raise KeystoreError(f"'crypto.kdfparams.{name}' must be an integer")
    return value


def _optional_address(document: dict[str, Any]) -> str | None:
    """Return the lowercase hex address (no 0x) the document claims, if it has one."""
    value = document.get("address")
    if value is None:
        return None
    match = _ADDRESS_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise KeystoreError("malformed 'address' in keystore (expected 20 bytes of hex)")
    return match.group(1).lower()


def _short(value: object) -> str:
    """Quote a value from an untrusted file for an error message, trimmed."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------- key derivation


def _derive_key(crypto: dict[str, Any], passphrase: bytes, caps: _KdfCaps) -> bytes:
    """Run the keystore's KDF, after checking its parameters against the caps."""
    kdf = crypto.get("kdf")
    params = crypto.get("kdfparams")
    if kdf is None:
        raise KeystoreError("not a V3 keystore: missing 'crypto.kdf'")
    if not isinstance(params, dict):
        raise KeystoreError("not a V3 keystore: missing 'crypto.kdfparams'")
    if _int_field(params, "dklen") != DKLEN:
        raise KeystoreError(f"unsupported 'crypto.kdfparams.dklen' (must be {DKLEN})")
    salt = _hex_field(params, "salt", "crypto.kdfparams", max_length=MAX_SALT_LENGTH)
    if kdf == "scrypt":
        return _derive_scrypt(params, passphrase, salt, caps)
    if kdf == "pbkdf2":
        return _derive_pbkdf2(params, passphrase, salt, caps)
    raise KeystoreError(f"unsupported kdf {_short(kdf)} (only scrypt and pbkdf2)")


def _derive_scrypt(params: dict[str, Any], passphrase: bytes, salt: bytes, caps: _KdfCaps) -> bytes:
    n, r, p = (_int_field(params, name) for name in ("n", "r", "p"))
    _check_scrypt_shape(n, r, p)
    _check_scrypt_caps(n, r, p, caps)
    return _scrypt(passphrase, salt, n, r, p)


def _derive_pbkdf2(params: dict[str, Any], passphrase: bytes, salt: bytes, caps: _KdfCaps) -> bytes:
    if params.get("prf") != "hmac-sha256":
        raise KeystoreError(f"unsupported pbkdf2 prf {_short(params.get('prf'))} (hmac-sha256)")
    iterations = _int_field(params, "c")
    if iterations < 1:
        raise KeystoreError("pbkdf2 iteration count c must be at least 1")
    if iterations > caps.pbkdf2_c:
        raise _over_cap(f"pbkdf2 c={iterations} (max {caps.pbkdf2_c})")
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=DKLEN, salt=salt, iterations=iterations)
    return kdf.derive(passphrase)


def _check_scrypt_shape(n: int, r: int, p: int) -> None:
    """Refuse scrypt parameters that no implementation accepts."""
    if n < 2 or n & (n - 1):
        raise KeystoreError(f"scrypt n must be a power of 2 greater than 1, got {n}")
    if r < 1 or p < 1:
        raise KeystoreError("scrypt r and p must be at least 1")


def _check_scrypt_caps(n: int, r: int, p: int, caps: _KdfCaps) -> None:
    """Refuse scrypt parameters that would cost more memory or CPU than we allow."""
    limits = (("n", n, caps.scrypt_n), ("r", r, caps.scrypt_r), ("p", p, caps.scrypt_p))
    for name, value, cap in limits:
        if value > cap:
            raise _over_cap(f"scrypt {name}={value} (max {cap})")
    if n * r * p > caps.scrypt_cost:
        raise _over_cap(f"scrypt n*r*p={n * r * p} (max {caps.scrypt_cost})")


def _over_cap(detail: str) -> KeystoreError:
    return KeystoreError(f"keystore KDF parameters exceed the allowed cap: {detail}")


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    if n >= 1 << (16 * r):
        return _scrypt_beyond_rfc_bound(passphrase, salt, n, r, p)
    try:
        return Scrypt(salt=salt, length=DKLEN, n=n, r=r, p=p).derive(passphrase)
    except MemoryError:
        raise KeystoreError(f"not enough memory for scrypt n={n} r={r}") from None


def _scrypt_beyond_rfc_bound(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    """Scrypt for n >= 2**(16r), which OpenSSL (behind `cryptography`) refuses.

    RFC 7914 asks for n < 2**(16r), but geth accepts r=1 with n=2**18 and the official V3
    test vectors use it; pycryptodome (a dependency of eth-account) computes it.
    """
    # The stubs say str, but pycryptodome takes bytes (and would encode str itself).
    derived = pycryptodome_scrypt(passphrase, salt, DKLEN, n, r, p)  # type: ignore[arg-type]
    assert isinstance(derived, bytes)
    return derived


# --------------------------------------------------------------------------- primitives


def _aes_128_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    """Encrypt or decrypt (the same operation in CTR mode)."""
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _mac(derived_key: bytes, ciphertext: bytes) -> bytes:
    return keccak(derived_key[16:32] + ciphertext)


def _encode_passphrase(passphrase: str) -> bytes:
    if not isinstance(passphrase, str):
        raise KeystoreError("passphrase must be a string")
    try:
        return passphrase.encode("utf-8")
    except UnicodeEncodeError:
        raise KeystoreError("passphrase is not valid Unicode text") from None


def _check_private_key(private_key: bytes) -> None:
    """Refuse anything that is not a usable secp256k1 private key."""
    if not isinstance(private_key, bytes | bytearray) or len(private_key) != PRIVATE_KEY_LENGTH:
        raise KeystoreError(f"private key must be {PRIVATE_KEY_LENGTH} bytes")
    if not 0 < int.from_bytes(private_key, "big") < SECP256K1_ORDER:
        raise KeystoreError("private key is outside the secp256k1 range")


def _check_decrypted_key(private_key: bytes, expected_address: str | None) -> None:
    try:
        _check_private_key(private_key)
    except KeystoreError:
        raise KeystoreError("keystore decrypted to an invalid private key") from None
    if expected_address is not None and _address_of_lower(private_key) != expected_address:
        raise KeystoreError("keystore 'address' does not match the decrypted key")


def _address_of_lower(private_key: bytes) -> str:
    """The address as V3 keystores store it: lowercase hex, no 0x."""
    return keys.PrivateKey(bytes(private_key)).public_key.to_address()[2:].lower()
