"""What the portal keeps of a secret it shows only once (API keys, worker tokens, compute group
join secrets): a SHA-256 digest, compared in constant time. Such secrets are long and random,
so a fast hash is enough; passwords go through Django's hashers instead."""

from __future__ import annotations

import hashlib
import hmac


def secret_digest(secret: str) -> str:
    """The stored form of a secret shown once: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(digest: str, secret: str) -> bool:
    """Whether `secret` is the one `digest` was made of (constant time)."""
    return hmac.compare_digest(digest, secret_digest(secret))
