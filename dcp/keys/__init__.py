"""The keys layer: the identity key (who deploys) and the account key (who pays).

- `keystore`: the Ethereum V3 keystore file format (also read and written by the portal);
- `signing`: finding the DCP home's keystores, unlocking them, and keys given directly.

Below the client; imports only `dcp.config` and `dcp.errors`.
"""

from __future__ import annotations

from .signing import (
    ACCOUNT_KEYSTORE,
    IDENTITY_KEYSTORE,
    KeySpec,
    Keystore,
    Role,
    default_keystore_path,
    missing_keystore_message,
    signing_key,
)

__all__ = [
    "ACCOUNT_KEYSTORE",
    "IDENTITY_KEYSTORE",
    "KeySpec",
    "Keystore",
    "Role",
    "default_keystore_path",
    "missing_keystore_message",
    "signing_key",
]
