"""The input set of a job: ranges, products of ranges, values, and streamed iterables.

| Python | protocol `input` | slice n receives |
| --- | --- | --- |
| `compute_for(1, 10, f)`, `Range(1, 10)`, `range(1, 11)` | `range` | `start + (n - 1) * step` |
| `Range(1, 100, group=10)` | `range` with `group` | a list of 10 consecutive values |
| `MultiRange((1, 3), (1, 2))` | `product` | the list `[i, j]`, like nested loops |
| `[...]`, `(...)`, `Sparse([...])` | `values` | the nth value |
| any other iterable (a generator) | `values`, streamed | the nth value |

Ranges are never enumerated here; their values are computed by the protocol's own arithmetic
(`dcp.protocol.inputs`), the very code the scheduler expands them with, so `key(n)` and
`lookup_value()` agree with what workers receive. A generator is read lazily, in batches, while
the job runs.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import DCPError
from ..protocol.inputs import (
    MAX_GROUP,
    MAX_PRODUCT_RANGES,
    InputError,
    ProductSpan,
    RangeSpan,
    count_values,
)
from .blobs import wire_value

__all__ = [
    "MAX_DEPLOY_BYTES",
    "InputSet",
    "MultiRange",
    "ProductInput",
    "Range",
    "RangeInput",
    "Sparse",
    "StreamInput",
    "ValuesInput",
    "canonical_key",
    "is_number",
    "json_values",
    "parse_args",
    "parse_compute_args",
    "parse_input",
    "range_slice_count",
]

Number = int | float
MAX_DEPLOY_VALUES = 100_000  # more values than this are streamed in batches
MAX_DEPLOY_BYTES = 2 * 1024 * 1024  # values whose JSON is larger are streamed in batches
REMEMBERED_STREAM_VALUES = 100_000  # a stream keeps this many inputs for key() and lookup_value()


range_slice_count = count_values  # values of an inclusive range, counted exactly in decimal


class RangeInput:
    """DCP's inclusive range `start, start + step, ...` up to end; `group=k` bundles k values.

    `dcp.Range(0, 1000, 3)` ends at 999 (end off the step grid is cut); float steps are exact:
    `Range(0, 1, 0.1).datum(4)` is `0.3`. With `group=k` slice n gets the list of values
    `(n-1)*k+1 .. n*k` (the last list shorter).
    """

    def __init__(
        self, start: Number, end: Number, step: Number = 1, group: int | None = None
    ) -> None:
        self.start, self.end, self.step = (_plain_number(value) for value in (start, end, step))
        self.group = _check_group(group)
        try:
            self.span = RangeSpan(self.start, self.end, self.step, self.group)
        except InputError as exc:
            raise DCPError("EINVALID", str(exc)) from None
        self.count = self.span.count
        if self.count < 1:
            hint = " (use a negative step to count down)" if self.end < self.start else ""
            raise DCPError(
                "EINVALID",
                f"the range from {self.start} to {self.end} with step {self.step} is empty{hint}",
            )

    @property
    def total(self) -> int:
        """How many slices: one per value, or one per group of values."""
        return self.span.slices

    def wire(self) -> dict[str, Any]:
        """The protocol's `input` object."""
        wire: dict[str, Any] = {"kind": "range", **self.spec()}
        if self.group:
            wire["group"] = self.group
        return wire

    def spec(self) -> dict[str, Number]:
        """start, end and step as sent (a product's ranges use this shape)."""
        return {"start": self.start, "end": self.end, "step": self.step}

    def value(self, index: int) -> Number:
        """The index-th value of the range (from 1), computed exactly as the scheduler does."""
        return self.span.value(index)

    def datum(self, slice_number: int) -> Any:
        """The input of slice `slice_number` (numbered from 1): a value, or a group's list."""
        _check_slice_number(slice_number, self.total)
        return self.span.datum(slice_number)

    def index_of(self, value: Any) -> int:
        """The position (from 1) of `value` in the range; KeyError when it is not on it."""
        if not is_number(value):
            raise KeyError(value)
        return self.span.index_of(_plain_number(value))

    def slice_of(self, value: Any) -> int:
        """The slice whose input is `value` (with groups: a member of the group, or the list)."""
        if not self.group:
            return self.index_of(value)
        if isinstance(value, list | tuple):
            if not value:
                raise KeyError(value)
            number = (self.index_of(value[0]) - 1) // self.group + 1
            if self.datum(number) != list(value):
                raise KeyError(value)
            return number
        return (self.index_of(value) - 1) // self.group + 1

    def iter_data(self) -> Iterator[Any]:
        """Every slice's input in order (local_exec only: a deploy never enumerates a range)."""
        return (self.datum(number) for number in range(1, self.total + 1))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeInput) and self.wire() == other.wire()

    def __hash__(self) -> int:
        return hash(json.dumps(self.wire(), sort_keys=True))

    def __repr__(self) -> str:
        group = f", group={self.group}" if self.group else ""
        return f"Range({self.start}, {self.end}, {self.step}{group})"


Range = RangeInput


class ProductInput:
    """The cartesian product of ranges, iterated like nested loops (the last range fastest).

    `dcp.MultiRange((1, 3), (1, 2))` makes slices `[1, 1], [1, 2], [2, 1], ...`; each range is a
    `dcp.Range` or a `(start, end[, step])` tuple. The work function receives a list `[i, j]`
    (JSON has no tuples), so write `def work(pair): i, j = pair`.
    """

    def __init__(self, *ranges: RangeInput | Sequence[Number]) -> None:
        if not ranges:
            raise DCPError("EINVALID", "MultiRange needs at least one range")
        if len(ranges) > MAX_PRODUCT_RANGES:
            raise DCPError("EINVALID", f"MultiRange takes at most {MAX_PRODUCT_RANGES} ranges")
        self.ranges = tuple(_product_axis(axis) for axis in ranges)
        self.span = ProductSpan([axis.span for axis in self.ranges])
        self.total = self.span.count

    def wire(self) -> dict[str, Any]:
        """The protocol's `input` object."""
        return {"kind": "product", "ranges": [axis.spec() for axis in self.ranges]}

    def datum(self, slice_number: int) -> list[Number]:
        """The input of slice `slice_number`: one value of each range, as a list."""
        _check_slice_number(slice_number, self.total)
        return self.span.datum(slice_number)

    def slice_of(self, value: Any) -> int:
        """The slice whose input is `value` (a list or tuple with one value per range)."""
        if not isinstance(value, list | tuple) or len(value) != len(self.ranges):
            raise KeyError(value)
        number = 0
        for axis, item in zip(self.ranges, value, strict=True):
            number = number * axis.count + axis.index_of(item) - 1
        return number + 1

    def iter_data(self) -> Iterator[list[Number]]:
        """Every slice's input in order (local_exec only)."""
        return (self.datum(number) for number in range(1, self.total + 1))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProductInput) and self.wire() == other.wire()

    def __hash__(self) -> int:
        return hash(json.dumps(self.wire(), sort_keys=True))

    def __repr__(self) -> str:
        return f"MultiRange({', '.join(map(repr, self.ranges))})"


MultiRange = ProductInput


class ValuesInput:
    """Specific values, one slice each, sent in the deploy (`dcp.Sparse([...])` or a list).

    `values` are kept as given (for `key(n)`); `wire_values` are their JSON form, what workers
    receive (tuples become lists, dict keys strings).
    """

    def __init__(self, values: Iterable[Any], wire_values: list[Any] | None = None) -> None:
        self.values = list(values)
        if wire_values is None:
            wire_values = _json_form(self.values, "the input of slice")
        self.wire_values = wire_values
        self._index: dict[str, int] | None = None

    @property
    def total(self) -> int:
        """How many slices: one per value."""
        return len(self.values)

    def wire(self) -> dict[str, Any]:
        """The protocol's `input` object."""
        return {"kind": "values", "values": self.wire_values}

    def datum(self, slice_number: int) -> Any:
        """The input of slice `slice_number` (numbered from 1), as it was given."""
        _check_slice_number(slice_number, self.total)
        return self.values[slice_number - 1]

    def slice_of(self, value: Any) -> int:
        """The first slice whose input is `value` (compared in JSON form)."""
        if self._index is None:
            self._index = {}
            for number, item in enumerate(self.wire_values, 1):
                self._index.setdefault(canonical_key(item), number)
        return self._index[canonical_key(value)]

    def iter_data(self) -> Iterator[Any]:
        """Every slice's input in order, in JSON form."""
        return iter(self.wire_values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValuesInput) and self.wire_values == other.wire_values

    def __hash__(self) -> int:
        return hash(canonical_key(self.wire_values))

    def __repr__(self) -> str:
        return f"Sparse({self.values!r})"


Sparse = ValuesInput


class StreamInput:
    """Values read lazily from any iterable and sent in batches while the job runs.

    exec() deploys an open job with the first batch, adds the others with `add_slices` (each
    with its own cheque) and closes the job when the iterable is exhausted, so a generator of
    unknown length works and memory stays flat. The first REMEMBERED_STREAM_VALUES inputs are
    kept for `key(n)` and `lookup_value()`; past that they are forgotten.
    """

    def __init__(self, source: Iterable[Any], *, keep_all: bool = False) -> None:
        self._iterator = iter(source)
        self._keep_all = keep_all  # a list is in memory anyway: keep answering key()
        self._remembered: list[Any] | None = []
        self._index: dict[str, int] | None = None
        self.consumed = 0
        self.exhausted = False
        self._peeked: list[Any] = []

    @property
    def total(self) -> int:
        """Slices read from the iterable so far (all of them once it is exhausted)."""
        return self.consumed

    def is_empty(self) -> bool:
        """Whether the iterable yields nothing (reads one value ahead to know)."""
        if self.consumed or self._peeked:
            return False
        self._peeked = list(itertools.islice(self._iterator, 1))
        return not self._peeked

    def next_batch(
        self, max_values: int, max_bytes: int, max_seconds: float | None = None
    ) -> list[Any]:
        """The next values in JSON form: at most `max_values`, about `max_bytes` of JSON, and
        no more than `max_seconds` of waiting on a slow iterable; [] once it is exhausted."""
        batch: list[Any] = []
        size = 0
        began = time.monotonic()
        while len(batch) < max_values and size < max_bytes and not self.exhausted:
            if max_seconds is not None and batch and time.monotonic() - began > max_seconds:
                break
            value = self._next_value()
            if value is _END:
                self.exhausted = True
                break
            wire = _json_form([value], "the input of slice", first=self.consumed + 1)[0]
            size += len(json.dumps(wire)) + 1
            batch.append(wire)
            self._remember(value)
        return batch

    def datum(self, slice_number: int) -> Any:
        """The input of slice `slice_number`, while the stream still remembers it."""
        _check_slice_number(slice_number, self.total)
        if self._remembered is None:
            raise DCPError(
                "EINVALID",
                f"the input set was streamed and had more than {REMEMBERED_STREAM_VALUES} "
                "values: their inputs are not kept; pass a list, or use slice numbers",
            )
        return self._remembered[slice_number - 1]

    def slice_of(self, value: Any) -> int:
        """The first slice whose input is `value`, while the stream still remembers inputs."""
        if self._remembered is None:
            self.datum(1)  # raises the explanation
        if self._index is None or len(self._index) < self.consumed:
            self._index = {}
            for number, item in enumerate(self._remembered or [], 1):
                self._index.setdefault(canonical_key(item), number)
        return self._index[canonical_key(value)]

    def iter_data(self) -> Iterator[Any]:
        """Every remaining input in JSON form, read as it is needed (local_exec)."""
        while batch := self.next_batch(1, 2**62):
            yield batch[0]

    def _next_value(self) -> Any:
        if self._peeked:
            return self._peeked.pop()
        return next(self._iterator, _END)

    def _remember(self, value: Any) -> None:
        self.consumed += 1
        if self._remembered is None:
            return
        if self.consumed > REMEMBERED_STREAM_VALUES and not self._keep_all:
            self._remembered = None
            self._index = None
        else:
            self._remembered.append(value)

    def __repr__(self) -> str:
        state = "exhausted" if self.exhausted else "streaming"
        return f"StreamInput({self.consumed} values read, {state})"


InputSet = RangeInput | ProductInput | ValuesInput | StreamInput

_END = object()


def canonical_key(value: Any) -> str:
    """A value's JSON text with sorted keys: equal for (1, 2) and [1, 2]."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        raise KeyError(value) from None


def parse_compute_args(
    params: tuple[Any, ...], args: Iterable[Any] | None, *, allow_empty: bool = False
) -> tuple[InputSet, Any, list[Any]]:
    """Split compute_for's positional arguments into (input set, work, arguments).

    `(input, work[, args])` takes an input set or iterable; `(start, end[, step], work[, args])`
    with separate numbers is a range.
    """
    if not params:
        raise DCPError("EINVALID", "compute_for needs an input set and a work function")
    if is_number(params[0]):
        count = _leading_numbers(params)
        input_set: InputSet = _parse_range_numbers(params[:count])
    else:
        count = 1
        input_set = parse_input(params[0], allow_empty=allow_empty)
    rest = params[count:]
    if not rest:
        raise DCPError("EINVALID", "compute_for needs a work function after the input set")
    if len(rest) > 2:
        raise DCPError(
            "EINVALID",
            "too many arguments: compute_for(input, work, args) or "
            "compute_for(start, end[, step], work, args)",
        )
    if len(rest) == 2 and args is not None:
        raise DCPError("EINVALID", "give the work function's arguments once, not twice")
    return input_set, rest[0], parse_args(rest[1] if len(rest) == 2 else args)


def parse_input(data: Any, *, allow_empty: bool = False) -> InputSet:
    """The input set for `data`: an input set as is, a Python range as a Range, a list or
    tuple as values (streamed when large), any other iterable as a stream."""
    if isinstance(data, RangeInput | ProductInput | StreamInput):
        return data
    if isinstance(data, ValuesInput):
        return _checked_values(data, allow_empty)
    if isinstance(data, range):
        if not data:
            raise DCPError("EINVALID", f"{data} is empty: a job needs at least one slice")
        return RangeInput(data.start, data[-1], data.step)
    _refuse_non_input(data)
    if isinstance(data, list | tuple):
        return _list_input(list(data), allow_empty)
    stream = StreamInput(data)
    if stream.is_empty() and not allow_empty:
        raise DCPError("EINVALID", "the input set is empty: a job needs at least one slice")
    return stream


def parse_args(args: Any) -> list[Any]:
    """The work function's extra arguments as a JSON-ready list."""
    if args is None:
        return []
    if not isinstance(args, list | tuple):
        raise DCPError(
            "EINVALID", f"args must be a list or tuple of arguments, not {type(args).__name__}"
        )
    return _json_form(list(args), "argument")


def is_number(value: object) -> bool:
    """A real number (int, float, numpy scalars) but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _parse_range_numbers(numbers_given: tuple[Any, ...]) -> RangeInput:
    if len(numbers_given) not in (2, 3):
        raise DCPError(
            "EINVALID",
            f"a range needs start, end and optionally step, got {len(numbers_given)} number(s)",
        )
    return RangeInput(*numbers_given)


def _list_input(values: list[Any], allow_empty: bool) -> InputSet:
    """A list in one deploy when small; streamed in batches when large."""
    if len(values) > MAX_DEPLOY_VALUES:
        return StreamInput(values, keep_all=True)
    wire = _json_form(values, "the input of slice")
    if len(json.dumps(wire)) > MAX_DEPLOY_BYTES:
        return StreamInput(values, keep_all=True)
    return _checked_values(ValuesInput(values, wire), allow_empty)


def _checked_values(values: ValuesInput, allow_empty: bool) -> ValuesInput:
    if not values.total and not allow_empty:
        raise DCPError("EINVALID", "the input set is empty: a job needs at least one slice")
    return values


def _refuse_non_input(data: Any) -> None:
    if isinstance(data, str | bytes | bytearray):
        raise DCPError(
            "EINVALID", "a string is not an input set: pass a list, e.g. list(text) or [text]"
        )
    if isinstance(data, Mapping):
        raise DCPError(
            "EINVALID", "a dict is not an input set: pass list(d.values()) or list(d.items())"
        )
    if not isinstance(data, Iterable):
        raise DCPError(
            "EINVALID",
            f"the input set must be an iterable or numbers start, end[, step], "
            f"not {type(data).__name__}",
        )


def _product_axis(axis: RangeInput | Sequence[Number]) -> RangeInput:
    if isinstance(axis, RangeInput):
        if axis.group:
            raise DCPError("EINVALID", "a MultiRange's ranges cannot be grouped")
        return axis
    if isinstance(axis, list | tuple) and len(axis) in (2, 3) and all(map(is_number, axis)):
        return RangeInput(*axis)
    raise DCPError(
        "EINVALID", f"a MultiRange takes dcp.Range or (start, end[, step]) tuples, not {axis!r}"
    )


def _check_group(group: Any) -> int | None:
    if group is None:
        return None
    if not isinstance(group, int) or isinstance(group, bool) or not 1 <= group <= MAX_GROUP:
        raise DCPError("EINVALID", f"a range's group must be an integer from 1 to {MAX_GROUP}")
    return group


def _leading_numbers(params: tuple[Any, ...]) -> int:
    count = 0
    while count < len(params) and is_number(params[count]):
        count += 1
    return count


def _plain_number(value: Any) -> Number:
    """int or finite float: what JSON carries and the scheduler reads."""
    if not is_number(value):
        raise DCPError("EINVALID", f"range bounds and steps must be numbers, not {value!r}")
    plain: Number = int(value) if isinstance(value, numbers.Integral) else float(value)
    if isinstance(plain, float) and not math.isfinite(plain):
        raise DCPError("EINVALID", f"range bounds must be finite numbers, not {value}")
    return plain


def json_values(values: list[Any], what: str) -> list[Any]:
    """The JSON form of `values` (what workers receive), or EINVALID naming the bad one."""
    return _json_form(values, what)


def _json_form(values: list[Any], what: str, first: int = 1) -> list[Any]:
    """`values` in their JSON form (dcp.client.blobs: tuples become lists, keys strings, bytes
    tagged, large bytes and dcp.Blob references to the store), or a clear error."""
    wire = []
    for index, value in enumerate(values):
        try:
            wire.append(wire_value(value))
        except (TypeError, ValueError) as exc:
            raise DCPError(
                "EINVALID", f"{what} {index + first} is not JSON-serialisable: {exc}"
            ) from None
    return wire


def _check_slice_number(slice_number: int, total: int) -> None:
    if not 1 <= slice_number <= total:
        raise IndexError(f"slice {slice_number} is outside 1..{total}")
