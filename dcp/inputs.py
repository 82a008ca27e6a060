"""The input set of a job: DCP's inclusive numeric range, or a list of values.

A range is sent as `{"kind": "range", "start", "end", "step"}` and never enumerated here; its
slice n has the datum `start + (n - 1) * step`. Values are enumerated once, client-side, and
sent as `{"kind": "values", "values": [...]}`; slice n has the nth value.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from .errors import DCPError

__all__ = ["InputSet", "RangeInput", "ValuesInput", "parse_compute_args", "range_slice_count"]

Number = int | float


@dataclass(frozen=True)
class RangeInput:
    """DCP's inclusive range: start, start + step, ... up to and including end."""

    start: Number
    end: Number
    step: Number = 1

    @property
    def total(self) -> int:
        """How many slices the range makes: floor((end - start) / step) + 1."""
        return range_slice_count(self.start, self.end, self.step)

    def wire(self) -> dict[str, Any]:
        """The protocol's `input` object."""
        return {"kind": "range", "start": self.start, "end": self.end, "step": self.step}

    def datum(self, slice_number: int) -> Number:
        """The input of slice `slice_number` (numbered from 1)."""
        _check_slice_number(slice_number, self.total)
        return self.start + (slice_number - 1) * self.step


@dataclass(frozen=True)
class ValuesInput:
    """Values enumerated client-side; `wire_values` is their JSON form (what workers get)."""

    values: list[Any]
    wire_values: list[Any]

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


InputSet = RangeInput | ValuesInput


def range_slice_count(start: Number, end: Number, step: Number) -> int:
    """Slices of an inclusive range, counted exactly in decimal as the scheduler counts them."""
    span = (Decimal(str(end)) - Decimal(str(start))) / Decimal(str(step))
    return max(int(span.to_integral_value(rounding=ROUND_FLOOR)) + 1, 0)


def parse_compute_args(
    params: tuple[Any, ...], args: Iterable[Any] | None
) -> tuple[InputSet, Any, list[Any]]:
    """Split compute_for's positional arguments into (input set, work, arguments).

    `(iterable, work[, args])` is a list of values; `(start, end[, step], work[, args])`
    with separate numbers is a range.
    """
    if not params:
        raise DCPError("EINVALID", "compute_for needs an input set and a work function")
    if is_number(params[0]):
        count = _leading_numbers(params)
        input_set: InputSet = parse_range(*params[:count])
    else:
        count = 1
        input_set = parse_values(params[0])
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


def is_number(value: object) -> bool:
    """A real number (int, float, numpy scalars) but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def parse_range(*numbers_given: Any) -> RangeInput:
    """A checked RangeInput from (start, end) or (start, end, step)."""
    if len(numbers_given) not in (2, 3):
        raise DCPError(
            "EINVALID",
            f"a range needs start, end and optionally step, got {len(numbers_given)} number(s)",
        )
    start, end, step = (_plain_number(value) for value in (*numbers_given, 1)[:3])
    if step == 0:
        raise DCPError("EINVALID", "a range's step cannot be 0")
    if range_slice_count(start, end, step) < 1:
        raise DCPError(
            "EINVALID",
            f"the range from {start} to {end} with step {step} is empty"
            + (" (use a negative step to count down)" if end < start else ""),
        )
    return RangeInput(start, end, step)


def parse_values(data: Any) -> ValuesInput:
    """A checked ValuesInput from any iterable (a generator is consumed once)."""
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
    values = list(data)
    if not values:
        raise DCPError("EINVALID", "the input set is empty: a job needs at least one slice")
    return ValuesInput(values, _json_form(values, "the input of slice"))


def parse_args(args: Any) -> list[Any]:
    """The work function's extra arguments as a JSON-ready list."""
    if args is None:
        return []
    if not isinstance(args, list | tuple):
        raise DCPError(
            "EINVALID", f"args must be a list or tuple of arguments, not {type(args).__name__}"
        )
    return _json_form(list(args), "argument")


def _leading_numbers(params: tuple[Any, ...]) -> int:
    count = 0
    while count < len(params) and is_number(params[count]):
        count += 1
    return count


def _plain_number(value: Any) -> Number:
    """int or finite float: what JSON carries and the scheduler reads."""
    plain: Number = int(value) if isinstance(value, numbers.Integral) else float(value)
    if isinstance(plain, float) and not math.isfinite(plain):
        raise DCPError("EINVALID", f"range bounds must be finite numbers, not {value}")
    return plain


def _json_form(values: list[Any], what: str) -> list[Any]:
    """`values` after a JSON round trip (tuples become lists, keys strings), or a clear error."""
    try:
        return json.loads(json.dumps(values, allow_nan=False))  # type: ignore[no-any-return]
    except (TypeError, ValueError):
        pass
    for index, value in enumerate(values):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DCPError(
                "EINVALID", f"{what} {index + 1} is not JSON-serialisable: {exc}"
            ) from None
    raise DCPError("EINVALID", "the values are not JSON-serialisable")


def _check_slice_number(slice_number: int, total: int) -> None:
    if not 1 <= slice_number <= total:
        raise IndexError(f"slice {slice_number} is outside 1..{total}")
