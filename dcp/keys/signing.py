"""Finding and unlocking the identity key and the account key that a deploy signs with.

The DCP home (`~/.dcp`, or `$DCP_HOMEDIR/.dcp`) holds `id.keystore` (the identity key, which
signs client sessions) and `default.keystore` (the account key, which signs payments). A key
may also be given directly: a keystore path, a keystore dict, a `Keystore` or a raw private key.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from ..config import dcp_home, portal_url
from ..errors import DCPError
from .keystore import (
    KeystoreError,
    address_of,
    keystore_address,
    load_keystore_file,
    read_keystore,
)

__all__ = [
    "ACCOUNT_KEYSTORE",
    "IDENTITY_KEYSTORE",
    "KeySpec",
    "Keystore",
    "default_keystore_path",
    "missing_keystore_message",
    "signing_key",
]

Role = Literal["identity", "account"]
IDENTITY_KEYSTORE = "id.keystore"
ACCOUNT_KEYSTORE = "default.keystore"
PASSPHRASE_PROMPTS = 3

_RAW_KEY_RE = re.compile(r"(?:0x)?[0-9a-fA-F]{64}")
_WRONG_PASSPHRASE = "wrong passphrase"  # how keystore.read_keystore words a bad passphrase


class Keystore:
    """A V3 keystore (file or dict) whose key is decrypted on first use, then kept."""

    def __init__(self, data: dict[str, Any], path: Path | None = None) -> None:
        self.data = data
        self.path = path
        self._private_key: bytes | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keystore:
        """Read a keystore file (not decrypted yet)."""
        file = Path(path).expanduser()
        try:
            return cls(load_keystore_file(file), file)
        except KeystoreError as exc:
            raise DCPError("EBADKEYSTORE", str(exc)) from None

    @property
    def address(self) -> str:
        """The checksummed address the keystore holds, read without decrypting it."""
        try:
            return keystore_address(self.data)
        except KeystoreError as exc:
            raise DCPError("EBADKEYSTORE", f"{self._label()}: {exc}") from None

    def private_key(self, passphrase: str | None = None) -> bytes:
        """Decrypt the key: with `passphrase`, else the empty one, `DCP_PASSPHRASE`, a prompt."""
        if self._private_key is None:
            candidates = [passphrase] if passphrase is not None else _passphrases(self._label())
            self._private_key = self._unlock(candidates)
        return self._private_key

    def _unlock(self, candidates: Iterator[str] | list[str]) -> bytes:
        for candidate in candidates:
            try:
                return read_keystore(self.data, candidate)
            except KeystoreError as exc:
                if _WRONG_PASSPHRASE not in str(exc):
                    raise DCPError("EBADKEYSTORE", f"{self._label()}: {exc}") from None
        raise DCPError(
            "EBADPASSPHRASE",
            f"wrong passphrase for {self._label()}: set DCP_PASSPHRASE to its passphrase, "
            "or run from a terminal to be asked for it",
        )

    def _label(self) -> str:
        return f"keystore {self.path}" if self.path else "the keystore"

    def __repr__(self) -> str:
        return f"Keystore(path={str(self.path)!r})"


KeySpec = Keystore | dict[str, Any] | str | bytes | os.PathLike[str] | None

# Default keystores stay unlocked for the life of the process, so exec() asks only once.
_default_keystores: dict[Path, Keystore] = {}


def default_keystore_path(role: Role) -> Path:
    """Where the identity or account keystore lives in the DCP home."""
    return dcp_home() / (IDENTITY_KEYSTORE if role == "identity" else ACCOUNT_KEYSTORE)


def signing_key(spec: KeySpec, role: Role) -> bytes:
    """The 32-byte private key named by `spec`, or the DCP home's keystore for `role`."""
    if spec is None:
        return _default_keystore(role).private_key()
    if isinstance(spec, Keystore):
        return spec.private_key()
    if isinstance(spec, dict):
        return Keystore(spec).private_key()
    if isinstance(spec, bytes | bytearray):
        return _raw_key(bytes(spec))
    if isinstance(spec, str) and _RAW_KEY_RE.fullmatch(spec) and not Path(spec).exists():
        return _raw_key(bytes.fromhex(spec.removeprefix("0x")))
    if isinstance(spec, str | os.PathLike):
        return _keystore_file(Path(spec).expanduser(), role).private_key()
    raise DCPError(
        "EINVALID",
        f"{role} must be a keystore path, a keystore dict, a dcp.Keystore or a private key, "
        f"not {type(spec).__name__}",
    )


def missing_keystore_message(path: Path, role: Role) -> str:
    """Tell a person where to get the keystore that is missing at `path`."""
    if role == "identity":
        return (
            f"no identity keystore at {path}: create an identity key on the First Devs tab "
            f"of the portal ({portal_url()}/portal/first-devs/) and save it there"
        )
    return (
        f"no account keystore at {path}: download an account keystore from the Accounts tab "
        f"of the portal ({portal_url()}/portal/accounts/) and save it there"
    )


def _default_keystore(role: Role) -> Keystore:
    path = default_keystore_path(role)
    if path not in _default_keystores:
        _default_keystores[path] = _keystore_file(path, role)
    return _default_keystores[path]


def _keystore_file(path: Path, role: Role) -> Keystore:
    if not path.is_file():
        raise DCPError("ENOKEYSTORE", missing_keystore_message(path, role))
    return Keystore.load(path)


def _raw_key(private_key: bytes) -> bytes:
    try:
        address_of(private_key)
    except KeystoreError as exc:
        raise DCPError("EINVALID", str(exc)) from None
    return private_key


def _passphrases(label: str) -> Iterator[str]:
    """The passphrases to try, in order: empty, `DCP_PASSPHRASE`, then asked at a terminal."""
    yield ""
    from_env = os.environ.get("DCP_PASSPHRASE")
    if from_env:
        yield from_env
    if sys.stdin is not None and sys.stdin.isatty():
        for _ in range(PASSPHRASE_PROMPTS):
            yield getpass.getpass(f"Passphrase for {label}: ")
