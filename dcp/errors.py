"""The one exception the client SDK raises: a protocol error code plus a readable message."""

from __future__ import annotations

__all__ = ["DCPError"]


class DCPError(Exception):
    """A job could not be built, deployed or finished.

    `code` is a protocol error code (`ENOFUNDS`, `ETOOMANYERRORS`, ...) or one of the client's
    own (`EINVALID` for a bad argument, `ENOKEYSTORE`, `EBADPASSPHRASE`, `ENOCONNECTION`).
    When a slice's error cancelled the job, `slice_number` and `traceback` say where it failed.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        slice_number: int | None = None,
        traceback: str | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.slice_number = slice_number
        self.traceback = traceback

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}"
        if self.slice_number is not None:
            text += f" (slice {self.slice_number})"
        if self.traceback:
            text += "\n" + self.traceback.rstrip("\n")
        return text
