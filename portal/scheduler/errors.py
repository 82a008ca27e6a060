"""The refusal every scheduler operation may answer with, whoever asked (socket, REST, page)."""

from __future__ import annotations


class SchedulerError(Exception):
    """A refused scheduler request; `code` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
