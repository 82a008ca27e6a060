"""The results of a finished job, ordered by slice number."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, overload

__all__ = ["ResultHandle"]


class ResultHandle:
    """What exec() returns: results ordered by slice, readable as a list or by slice number.

    Iterating and indexing (`handle[0]`, `handle[-1]`) go over the values, 0-based like a list;
    `keys()` are slice numbers (from 1) and `key(n)` is the input datum of slice n.
    """

    def __init__(self, entries: list[tuple[int, Any]], datum: Callable[[int], Any]) -> None:
        self._entries = sorted(entries, key=lambda entry: entry[0])
        self._datum = datum

    def values(self) -> list[Any]:
        """The results in slice order."""
        return [value for _, value in self._entries]

    def keys(self) -> list[int]:
        """The slice numbers, in order."""
        return [number for number, _ in self._entries]

    def entries(self) -> list[tuple[int, Any]]:
        """(slice number, result) pairs in slice order."""
        return list(self._entries)

    def from_entries(self) -> dict[int, Any]:
        """A dict from slice number to result."""
        return dict(self._entries)

    def key(self, slice_number: int) -> Any:
        """The input datum of slice `slice_number` (numbered from 1)."""
        return self._datum(slice_number)

    def len(self) -> int:
        """How many results (DCP's spelling of len(handle))."""
        return len(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Any]:
        return (value for _, value in self._entries)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [value for _, value in self._entries[index]]
        return self._entries[index][1]

    def __repr__(self) -> str:
        preview = ", ".join(repr(value) for value in self.values()[:5])
        more = ", ..." if len(self) > 5 else ""
        return f"ResultHandle([{preview}{more}], len={len(self)})"
