"""The computed input forms of a job, `range` and `product`: slice number -> datum, exactly.

A range is never enumerated: its values are computed from the numbers as sent, in integers when
start and step are integers and in decimal otherwise (only then turned into floats), so
`range(0, 1, 0.1)` gives 0.3 and never 0.30000000000000004. The scheduler expands a job's input
with these classes and the client answers `key()` and `lookup_value()` with the same ones, so
both always agree on what slice n receives.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
from math import prod
from typing import Any

Number = int | float
MAX_GROUP = 1_000_000  # the most values one slice of a grouped range receives
MAX_PRODUCT_RANGES = 8  # the most ranges a product multiplies


class InputError(ValueError):
    """An input form that cannot be expanded (step 0, a group below 1, ...)."""


def exact(value: Number) -> Decimal:
    """The number as its shortest text says, as it is read off the JSON."""
    return Decimal(str(value))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class RangeSpan:
    """start, start+step, ... up to end inclusive (ends off the step grid are cut);
    `group=k` bundles k consecutive values a slice."""

    def __init__(self, start: Number, end: Number, step: Number = 1, group: int | None = None):
        if step == 0:
            raise InputError("a range's step cannot be 0")
        if group is not None and group < 1:
            raise InputError("a range's group must be at least 1")
        self.start, self.end, self.step, self.group = start, end, step, group
        self.integral = _is_int(start) and _is_int(step)
        self.count = count_values(start, end, step)

    @property
    def slices(self) -> int:
        """How many slices: one per value, or one per group of values."""
        return -(-self.count // self.group) if self.group else self.count

    def value(self, index: int) -> Number:
        """The index-th value of the range, from 1."""
        if self.integral:  # the common case, without decimal arithmetic
            return int(self.start) + (index - 1) * int(self.step)
        return float(exact(self.start) + (index - 1) * exact(self.step))

    def datum(self, number: int) -> Any:
        """What slice `number` receives: a value, or the list of its group's values."""
        if not self.group:
            return self.value(number)
        first = (number - 1) * self.group + 1
        last = min(number * self.group, self.count)
        return [self.value(i) for i in range(first, last + 1)]

    def index_of(self, value: Number) -> int:
        """The position (from 1) of `value` in the range; KeyError when it is not on it."""
        if self.integral and _is_int(value):
            steps, rest = divmod(int(value) - int(self.start), int(self.step))
            if rest or not 0 <= steps < self.count:
                raise KeyError(value)
            return steps + 1
        offset = (exact(value) - exact(self.start)) / exact(self.step)
        if offset != offset.to_integral_value() or not 0 <= offset < self.count:
            raise KeyError(value)
        return int(offset) + 1


def count_values(start: Number, end: Number, step: Number) -> int:
    """Values of an inclusive range, counted exactly in decimal."""
    span = (exact(end) - exact(start)) / exact(step)
    return max(int(span.to_integral_value(rounding=ROUND_FLOOR)) + 1, 0)


class ProductSpan:
    """The cartesian product of ranges, iterated like nested loops, the last range fastest."""

    def __init__(self, ranges: list[RangeSpan]):
        if not ranges:
            raise InputError("a product needs at least one range")
        self.ranges = ranges
        self.count = prod(r.count for r in ranges)

    @property
    def slices(self) -> int:
        return self.count

    def datum(self, number: int) -> list[Number]:
        """The list of values, one per range, that slice `number` receives."""
        index, values = number - 1, []
        for axis in reversed(self.ranges):
            index, position = divmod(index, axis.count)
            values.append(axis.value(position + 1))
        return values[::-1]


def span_of(kind: str, spec: dict[str, Any]) -> RangeSpan | ProductSpan:
    """The expander of a computed input (`range` or `product`) from its wire form sans kind."""
    if kind == "range":
        return RangeSpan(spec["start"], spec["end"], spec.get("step", 1), spec.get("group"))
    if kind == "product":
        axes = [RangeSpan(r["start"], r["end"], r.get("step", 1)) for r in spec["ranges"]]
        return ProductSpan(axes)
    raise InputError(f"input kind {kind!r} is not computed")
