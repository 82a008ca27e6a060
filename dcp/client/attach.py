"""What an attached handle learns of its job from the scheduler (`Job.attach`).

The scheduler's `status` reply carries the job's `info`: its work function, arguments, input
form and offer. A range or product input is rebuilt here and answers `key()` and
`lookup_value()` arithmetically, as on the handle that deployed it; a `values` input is read
from the scheduler page by page (`inputs` requests) as those answers need it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from ..errors import DCPError
from ..protocol.messages import JobInfo
from .inputs import InputSet, ProductInput, RangeInput, canonical_key
from .results import INPUTS_PAGE

__all__ = ["AttachedInfo", "RemoteValues", "attached_info"]

InputsFetcher = Callable[[int, int], list[Any]]  # (first, last slice) -> their input values


class RemoteValues:
    """The input values of a `values` job deployed elsewhere, fetched as they are needed."""

    def __init__(self, fetch: InputsFetcher, total: Callable[[], int]) -> None:
        self._fetch = fetch
        self._total = total
        self._pages: dict[int, list[Any]] = {}  # first slice of a page -> its values
        self._index: dict[str, int] | None = None
        self._indexed = 0

    @property
    def total(self) -> int:
        """How many slices the job has (as far as this handle knows)."""
        return self._total()

    def datum(self, slice_number: int) -> Any:
        """The input of slice `slice_number`, as the scheduler holds it (JSON form)."""
        if not 1 <= slice_number <= self.total:
            raise IndexError(f"slice {slice_number} is outside 1..{self.total}")
        first = (slice_number - 1) // INPUTS_PAGE * INPUTS_PAGE + 1
        page = self._page(first)
        if slice_number - first >= len(page):
            raise IndexError(f"the scheduler has no input for slice {slice_number}")
        return page[slice_number - first]

    def slice_of(self, value: Any) -> int:
        """The first slice whose input is `value` (compared in JSON form)."""
        wanted = canonical_key(value)
        if self._index is None or self._indexed < self.total:
            self._index = dict(self._index or {})
            for number, item in self._values(self._indexed + 1):
                self._index.setdefault(canonical_key(item), number)
                self._indexed = number
        return self._index[wanted]

    def iter_data(self) -> Iterator[Any]:
        """Every slice's input in order."""
        return (item for _, item in self._values(1))

    def _values(self, start: int) -> Iterator[tuple[int, Any]]:
        first = (start - 1) // INPUTS_PAGE * INPUTS_PAGE + 1
        while first <= self.total:
            page = self._page(first)
            for number, item in enumerate(page, first):
                if number >= start:
                    yield number, item
            if len(page) < INPUTS_PAGE:
                return
            first += INPUTS_PAGE

    def _page(self, first: int) -> list[Any]:
        last = min(first + INPUTS_PAGE - 1, self.total)
        page = self._pages.get(first)
        if page is None or (len(page) < last - first + 1):  # an open job may have grown
            page = self._pages[first] = self._fetch(first, last)
        return page

    def __repr__(self) -> str:
        return f"RemoteValues({self.total} slices)"


class AttachedInfo:
    """The parts of an attached job that its handle needs: work, arguments, input, offer."""

    def __init__(self, info: JobInfo, input_set: InputSet | RemoteValues) -> None:
        self.work = info.work.model_dump()
        self.args = list(info.args)
        self.input = input_set
        self.offer = Decimal(info.slice_payment_offer)
        self.open = info.open


def attached_info(
    info: JobInfo, fetch_values: InputsFetcher, total: Callable[[], int]
) -> AttachedInfo:
    """The job's definition from the scheduler's `info`; `fetch_values` reads a values job's
    inputs and `total` says how many slices the job has now."""
    return AttachedInfo(info, input_of(info.input, fetch_values, total))


def input_of(
    form: dict[str, Any], fetch_values: InputsFetcher, total: Callable[[], int]
) -> InputSet | RemoteValues:
    """The input set of the wire form `form` (range, product, or `{"kind": "values"}`)."""
    kind = form.get("kind")
    if kind == "range":
        return RangeInput(form["start"], form["end"], form.get("step", 1), form.get("group"))
    if kind == "product":
        axes = [(axis["start"], axis["end"], axis.get("step", 1)) for axis in form["ranges"]]
        return ProductInput(*axes)
    if kind == "values":
        return RemoteValues(fetch_values, total)
    raise DCPError("EPROTOCOL", f"the scheduler describes an unknown input kind {kind!r}")
