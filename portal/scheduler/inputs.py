"""The input set of a job, expanded on the server: slice number -> datum, without enumerating.

A range is exact: its values are computed in decimal from the numbers as the client sent them
and only then turned into floats, so `range(0, 1, 0.1)` gives 0.3 and never 0.30000000000000004.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
from math import prod
from typing import Any

Number = int | float


class InputError(ValueError):
    """An input set that cannot be expanded (step 0, a group below 1, ...)."""


def _decimal(value: Number) -> Decimal:
    return Decimal(str(value))


class RangeInput:
    """start, start+step, ... up to end inclusive, optionally grouped k values a slice."""

    def __init__(self, start: Number, end: Number, step: Number = 1, group: int | None = None):
        if step == 0:
            raise InputError("a range's step cannot be 0")
        if group is not None and group < 1:
            raise InputError("a range's group must be at least 1")
        self.start, self.step, self.group = _decimal(start), _decimal(step), group
        self.integral = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, step))
        self.int_start, self.int_step = (int(start), int(step)) if self.integral else (0, 0)
        span = (_decimal(end) - self.start) / self.step
        self.count = max(int(span.to_integral_value(rounding=ROUND_FLOOR)) + 1, 0)

    @property
    def slices(self) -> int:
        return -(-self.count // self.group) if self.group else self.count

    def value(self, index: int) -> Number:
        """The index-th value of the range, from 1."""
        if self.integral:  # the common case, without decimal arithmetic
            return self.int_start + (index - 1) * self.int_step
        return float(self.start + (index - 1) * self.step)

    def datum(self, number: int) -> Any:
        if not self.group:
            return self.value(number)
        first = (number - 1) * self.group + 1
        last = min(number * self.group, self.count)
        return [self.value(i) for i in range(first, last + 1)]


class ProductInput:
    """The cartesian product of ranges, iterated like nested loops, the last range fastest."""

    def __init__(self, ranges: list[dict[str, Any]]):
        if not ranges:
            raise InputError("a product needs at least one range")
        self.ranges = [RangeInput(r["start"], r["end"], r.get("step", 1)) for r in ranges]
        self.count = prod(r.count for r in self.ranges)

    @property
    def slices(self) -> int:
        return self.count

    def datum(self, number: int) -> list[Number]:
        index, values = number - 1, []
        for axis in reversed(self.ranges):
            index, position = divmod(index, axis.count)
            values.append(axis.value(position + 1))
        return values[::-1]


def expander(kind: str, spec: dict[str, Any]) -> RangeInput | ProductInput:
    """The expander of a computed input kind (`range` or `product`) from its stored spec."""
    if kind == "range":
        return RangeInput(spec["start"], spec["end"], spec.get("step", 1), spec.get("group"))
    if kind == "product":
        return ProductInput(spec["ranges"])
    raise InputError(f"input kind {kind!r} is not computed")
