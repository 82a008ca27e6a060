"""The results of a job, ordered by slice number, and fetching them from the scheduler."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, overload

from ..config import scheduler_url
from ..errors import DCPError
from ..protocol.limits import MAX_RESULTS_PER_FETCH
from ..protocol.messages import FetchInputs, FetchResults, InputsReply, ResultsReply, SliceValue
from ..protocol.values import BlobRef
from .blobs import result_value
from .store import read_blob

__all__ = ["RESULTS_PAGE", "ResultHandle", "fetch_inputs", "fetch_pages", "parse_slice_numbers"]

RESULTS_PAGE = MAX_RESULTS_PER_FETCH  # the most slices one `results` request may ask for
INPUTS_PAGE = MAX_RESULTS_PER_FETCH  # the most values one `inputs` request may ask for

Entries = list[tuple[int, Any]]
Request = Callable[[dict[str, Any], type[Any]], Any]  # (frame, reply type) -> the reply
Fetcher = Callable[[int, int], Entries]  # (first, last slice) -> their stored results
BlobReader = Callable[[BlobRef], bytes]  # a blob result's reference -> its checked bytes


class InputLike(Protocol):
    """What results need of an input set: slice number to input, and back."""

    def datum(self, slice_number: int) -> Any: ...
    def slice_of(self, value: Any) -> int: ...


_SPAN_RE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


class ResultHandle:
    """What exec() returns: results ordered by slice, readable as a list or by slice number.

    Iterating and indexing (`handle[0]`, `handle[-1]`) go over the values, 0-based like a list;
    `keys()` are slice numbers (from 1), `key(n)` is the input of slice n, `lookup_value(x)` the
    result for input x, and `fetch("1-10")` fetches results from the scheduler. Results come in
    the value encoding (dcp/protocol/values.py) and are kept decoded: bytes as bytes. A result
    too big for a frame came back as a reference to the portal's store: its bytes are fetched
    (`blobs(ref)`; by default from the portal dcp.init() chose) the first time that result is
    read, checked against their hash, and kept.
    """

    def __init__(
        self,
        entries: Iterable[tuple[int, Any]],
        datum: InputLike | Callable[[int], Any] | None = None,
        *,
        fetcher: Fetcher | None = None,
        blobs: BlobReader | None = None,
    ) -> None:
        decoded = ((number, result_value(value)) for number, value in entries)
        self._entries = sorted(decoded, key=lambda entry: entry[0])
        self._by_slice = dict(self._entries)
        self._position = {number: index for index, (number, _) in enumerate(self._entries)}
        self._unread = {number for number, value in self._entries if _holds_blobs(value)}
        self._input = None if callable(datum) else datum
        self._datum: Callable[[int], Any] | None = (
            datum if callable(datum) else (datum.datum if datum is not None else None)
        )
        self._fetcher = fetcher
        self._blobs = blobs
        self._blob_bytes: dict[BlobRef, bytes] = {}

    def _read(self, number: int) -> Any:
        """The result of slice `number`, its blobs fetched (once) if it has any."""
        if number in self._unread:
            value = _with_bytes(self._by_slice[number], self._blob)
            self._by_slice[number] = value
            self._entries[self._position[number]] = (number, value)
            self._unread.discard(number)
        return self._by_slice[number]

    def _blob(self, ref: BlobRef) -> bytes:
        if ref not in self._blob_bytes:
            read = self._blobs or (lambda blob: read_blob(scheduler_url(), blob))
            self._blob_bytes[ref] = read(ref)
        return self._blob_bytes[ref]

    def values(self) -> list[Any]:
        """The results in slice order."""
        return [self._read(number) for number, _ in self._entries]

    def keys(self) -> list[int]:
        """The slice numbers, in order."""
        return [number for number, _ in self._entries]

    def entries(self) -> list[tuple[int, Any]]:
        """(slice number, result) pairs in slice order."""
        return [(number, self._read(number)) for number, _ in self._entries]

    def from_entries(self) -> dict[int, Any]:
        """A dict from slice number to result."""
        return dict(self.entries())

    def key(self, slice_number: int) -> Any:
        """The input of slice `slice_number` (numbered from 1), as the worker received it."""
        if self._datum is None:
            raise DCPError("EINVALID", "the input set of this job is not known here (attached)")
        return self._datum(slice_number)

    def lookup_value(self, input_value: Any) -> Any:
        """The result of the slice whose input is `input_value`; KeyError when there is none.

        Ranges and products find the slice arithmetically; values are searched (in JSON form,
        so `(1, 2)` finds `[1, 2]`). In a grouped range a member value finds its group's slice.
        """
        if self._input is None:
            raise DCPError("EINVALID", "lookup_value needs the job's input set, unknown here")
        number = self._input.slice_of(input_value)
        if number not in self._by_slice:
            raise KeyError(input_value)
        return self._read(number)

    def fetch(self, slices: Any) -> ResultHandle:
        """Fetch the stored results of some slices from the scheduler, as a new handle.

        `slices` is a range of slice numbers (`range(1, 11)`), a text span (`"1-10"`, `"7"`),
        an inclusive `(first, last)` pair, or a list of slice numbers.
        """
        if self._fetcher is None:
            raise DCPError("EINVALID", "these results are not tied to a scheduler job")
        numbers = parse_slice_numbers(slices)
        source = self._input or self._datum
        if not numbers:
            return ResultHandle([], source, fetcher=self._fetcher, blobs=self._blobs)
        wanted = set(numbers)
        entries = self._fetcher(min(numbers), max(numbers))
        kept = [(number, value) for number, value in entries if number in wanted]
        return ResultHandle(kept, source, fetcher=self._fetcher, blobs=self._blobs)

    def len(self) -> int:
        """How many results (DCP's spelling of len(handle))."""
        return len(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Any]:
        return (self._read(number) for number, _ in list(self._entries))

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self._read(number) for number, _ in self._entries[index]]
        return self._read(self._entries[index][0])

    def __repr__(self) -> str:
        # Says what it holds without fetching: a blob result not read yet shows as a BlobRef.
        preview = ", ".join(repr(value) for _, value in self._entries[:5])
        more = ", ..." if len(self) > 5 else ""
        return f"ResultHandle([{preview}{more}], len={len(self)})"


def _holds_blobs(value: Any) -> bool:
    """Whether a decoded result holds a blob reference, anywhere inside."""
    if isinstance(value, BlobRef):
        return True
    if isinstance(value, list):
        return any(_holds_blobs(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_blobs(item) for item in value.values())
    return False


def _with_bytes(value: Any, read: BlobReader) -> Any:
    """A decoded result with each blob reference replaced by its bytes."""
    if isinstance(value, BlobRef):
        return read(value)
    if isinstance(value, list):
        return [_with_bytes(item, read) for item in value]
    if isinstance(value, dict):
        return {key: _with_bytes(item, read) for key, item in value.items()}
    return value


def parse_slice_numbers(slices: Any) -> list[int]:
    """Slice numbers from `range(1, 11)`, `"1-10"`, `"1-3,7"`, `(1, 10)` or `[1, 5, 9]`."""
    if isinstance(slices, range):
        numbers = list(slices)
    elif isinstance(slices, str):
        numbers = _parse_spans(slices)
    elif isinstance(slices, int) and not isinstance(slices, bool):
        numbers = [slices]
    elif isinstance(slices, tuple) and len(slices) == 2 and all(_is_int(n) for n in slices):
        numbers = list(range(slices[0], slices[1] + 1))
    elif isinstance(slices, list | tuple | set | frozenset) and all(map(_is_int, slices)):
        numbers = sorted(set(slices))
    else:
        raise DCPError(
            "EINVALID",
            f"slices must be a range, a span such as '1-10', a (first, last) pair or a list "
            f"of slice numbers, not {slices!r}",
        )
    if any(number < 1 for number in numbers):
        raise DCPError("EINVALID", "slice numbers start at 1")
    return numbers


def fetch_pages(request: Request, job_id: str, first: int, last: int) -> Entries:
    """Every stored result of slices first..last, asked for in pages of RESULTS_PAGE slices
    (a page of large results stops early, at the frame limit, and says where to go on)."""
    entries: Entries = []
    start = first
    while start <= last:
        end = min(start + RESULTS_PAGE - 1, last)
        page = FetchResults(type="results", job=job_id, start=start, end=end)
        reply: ResultsReply = request(page.model_dump(exclude_unset=True), ResultsReply)
        entries.extend(map(_entry, reply.results))  # slices without a result yet are absent
        start = reply.next if reply.next is not None and start < reply.next <= end else end + 1
    return entries


def fetch_inputs(request: Request, job_id: str, first: int, last: int) -> list[Any]:
    """The input values of slices first..last of a `values` job, in pages of INPUTS_PAGE."""
    values: list[Any] = []
    start = first
    while start <= last:
        end = min(start + INPUTS_PAGE - 1, last)
        page = FetchInputs(type="inputs", job=job_id, start=start, end=end)
        reply: InputsReply = request(page.model_dump(exclude_unset=True), InputsReply)
        if reply.start != start or not reply.values:
            break  # the scheduler has no more of them
        taken = reply.values[: end - start + 1]
        values.extend(taken)
        start += len(taken)
    return values


def _entry(row: tuple[int, Any] | SliceValue) -> tuple[int, Any]:
    return (row.slice, row.value) if isinstance(row, SliceValue) else (row[0], row[1])


def _parse_spans(text: str) -> list[int]:
    numbers: set[int] = set()
    for part in text.split(","):
        match = _SPAN_RE.fullmatch(part)
        if match is None:
            raise DCPError("EINVALID", f"{text!r} is not a span of slices such as '1-10'")
        first = int(match.group(1))
        last = int(match.group(2) or first)
        numbers.update(range(first, last + 1))
    return sorted(numbers)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
