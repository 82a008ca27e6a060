"""The V3 keystore format under the name the portal imports it by (`dcp.keystore`).

It is defined in `dcp.keys.keystore`; this module only gives it its short public path.
"""

from __future__ import annotations

from .keys.keystore import (
    SECP256K1_ORDER,
    KeystoreError,
    address_of,
    create_keystore,
    keystore_address,
    load_keystore_file,
    read_keystore,
    save_keystore_file,
)

__all__ = [
    "SECP256K1_ORDER",
    "KeystoreError",
    "address_of",
    "create_keystore",
    "keystore_address",
    "load_keystore_file",
    "read_keystore",
    "save_keystore_file",
]
