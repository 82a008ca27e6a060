"""The refusal every store operation may answer with: an HTTP status, a stable code, a message."""

from __future__ import annotations


class StoreError(Exception):
    """A refused store request; the view answers it in the API's error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def describe_bytes(count: int) -> str:
    """A size for people: `256 MiB`, `1.5 GiB`, `300 bytes`."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{count} bytes"
