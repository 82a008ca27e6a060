"""The computed input forms: slice n receives exactly what a client enumerating them would give."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dcp.protocol.inputs import InputError, RangeSpan, span_of


def enumerate_all(expander) -> list:
    return [expander.datum(n) for n in range(1, expander.slices + 1)]


def test_a_range_is_inclusive():
    assert enumerate_all(RangeSpan(1, 10)) == list(range(1, 11))


def test_an_end_off_the_step_grid_is_cut_to_the_last_value_on_it():
    numbers = RangeSpan(0, 1000, 3)
    assert numbers.slices == 334
    assert numbers.datum(numbers.slices) == 999


def test_float_steps_are_exact_decimals():
    assert enumerate_all(RangeSpan(0, 1, 0.1)) == [
        0.0,
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.6,
        0.7,
        0.8,
        0.9,
        1.0,
    ]


def test_a_descending_range():
    assert enumerate_all(RangeSpan(5, 1, -2)) == [5, 3, 1]


def test_a_grouped_range_hands_lists_with_a_shorter_last_one():
    assert enumerate_all(RangeSpan(1, 10, 1, group=4)) == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]


def test_a_product_iterates_like_nested_loops():
    product = span_of(
        "product", {"ranges": [{"start": 1, "end": 2}, {"start": 10, "end": 30, "step": 10}]}
    )
    assert enumerate_all(product) == [[1, 10], [1, 20], [1, 30], [2, 10], [2, 20], [2, 30]]


@pytest.mark.parametrize("bad", [{"step": 0}, {"group": 0}])
def test_impossible_ranges_are_refused(bad):
    with pytest.raises(InputError):
        RangeSpan(1, 10, bad.get("step", 1), bad.get("group"))


def test_a_million_slice_range_is_not_enumerated():
    numbers = RangeSpan(1, 1_000_000)
    assert numbers.slices == 1_000_000
    assert numbers.datum(999_999) == 999_999


@given(
    start=st.integers(-1000, 1000),
    length=st.integers(0, 200),
    step=st.integers(1, 7),
    group=st.one_of(st.none(), st.integers(1, 9)),
)
def test_integer_ranges_match_python_range(start, length, step, group):
    end = start + length
    values = list(range(start, end + 1, step))
    expected = values
    if group:
        expected = [values[i : i + group] for i in range(0, len(values), group)]
    assert enumerate_all(RangeSpan(start, end, step, group)) == expected


@given(st.lists(st.tuples(st.integers(-5, 5), st.integers(0, 4)), min_size=1, max_size=3))
def test_products_match_itertools(axes):
    ranges = [{"start": a, "end": a + n} for a, n in axes]
    expected = [list(p) for p in itertools.product(*(range(a, a + n + 1) for a, n in axes))]
    assert enumerate_all(span_of("product", {"ranges": ranges})) == expected


def test_a_range_wire_form_gives_its_span():
    span = span_of("range", {"start": 0, "end": 1, "step": 0.25, "group": 2})
    assert span.slices == 3 and span.datum(3) == [1.0]


def test_a_values_form_is_not_computed():
    with pytest.raises(InputError):
        span_of("values", {"values": [1]})


def test_index_of_finds_a_value_on_the_range_and_refuses_one_off_it():
    numbers = RangeSpan(0, 1, 0.1)
    assert numbers.index_of(0.3) == 4
    assert RangeSpan(1, 100, 3).index_of(10) == 4
    for missing in (0.35, 1.1):
        with pytest.raises(KeyError):
            numbers.index_of(missing)


@given(start=st.integers(-50, 50), length=st.integers(0, 60), step=st.integers(1, 5))
def test_index_of_inverts_value(start, length, step):
    numbers = RangeSpan(start, start + length, step)
    for index in range(1, numbers.count + 1):
        assert numbers.index_of(numbers.value(index)) == index
