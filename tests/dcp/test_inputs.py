"""compute_for's arguments: DCP's inclusive ranges, iterables of values, and clear errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dcp
from dcp.inputs import RangeInput, ValuesInput, range_slice_count

pytestmark: list[pytest.MarkDecorator] = []


def work(x):
    return x


def test_two_numbers_are_an_inclusive_range_of_ten_slices():
    job = dcp.compute_for(1, 10, work)
    assert job.input == RangeInput(1, 10, 1)
    assert job.total == 10
    assert job.input.wire() == {"kind": "range", "start": 1, "end": 10, "step": 1}


def test_three_numbers_give_the_step():
    job = dcp.compute_for(0, 10, 3, work)
    assert job.input.wire() == {"kind": "range", "start": 0, "end": 10, "step": 3}
    assert job.total == 4  # 0, 3, 6, 9
    assert [job.input.datum(n) for n in range(1, 5)] == [0, 3, 6, 9]


def test_a_negative_step_counts_down():
    job = dcp.compute_for(10, 1, -3, work)
    assert job.total == 4  # 10, 7, 4, 1
    assert job.input.datum(4) == 1


def test_a_float_range_is_counted_in_decimal():
    assert dcp.compute_for(0, 0.3, 0.1, work).total == 4  # float division says 2.999...


def test_a_range_is_never_enumerated_client_side():
    job = dcp.compute_for(1, 10**12, work)
    assert job.total == 10**12
    assert job.input.wire()["end"] == 10**12


def test_the_alias_compute_for_underscore_makes_the_same_job():
    assert dcp.compute.for_(1, 5, work).input == dcp.compute_for(1, 5, work).input


def test_a_list_is_values_enumerated_in_order():
    job = dcp.compute_for([3, "a", None], work)
    assert job.input.wire() == {"kind": "values", "values": [3, "a", None]}
    assert job.total == 3


def test_a_tuple_is_values_not_a_range():
    job = dcp.compute_for((1, 10), work)
    assert isinstance(job.input, ValuesInput)
    assert job.total == 2


def test_a_generator_is_consumed_once_into_values():
    job = dcp.compute_for((n * n for n in range(4)), work)
    assert job.input.wire()["values"] == [0, 1, 4, 9]


def test_values_travel_as_json_but_keys_keep_the_original():
    job = dcp.compute_for([(1, 2), {3: "x"}], work)
    assert job.input.wire()["values"] == [[1, 2], {"3": "x"}]
    assert job.input.datum(1) == (1, 2)


def test_args_may_be_keyword_or_last_positional():
    assert dcp.compute_for([1], work, args=(2, 3)).args == [2, 3]
    assert dcp.compute_for([1], work, [2, 3]).args == [2, 3]
    assert dcp.compute_for(1, 5, 2, work, [7]).args == [7]
    assert dcp.compute_for([1], work).args == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ((1, 10, 0, work), "step cannot be 0"),
        ((10, 1, work), "empty.*negative step"),
        ((1, work), "start, end"),
        ((1, 2, 3, 4, work), "got 4 number"),
        ((1, float("inf"), work), "finite"),
        (([], work), "input set is empty"),
        ((iter(()), work), "input set is empty"),
        (("abc", work), "a string is not an input set"),
        (({"a": 1}, work), "a dict is not an input set"),
        ((object(), work), "must be an iterable"),
        (([1],), "needs a work function"),
        ((), "needs an input set"),
        (([1], 42), "work function must be a function or a source string"),
        (([object()], work), "input of slice 1 is not JSON-serialisable"),
        (([1, float("nan")], work), "input of slice 2"),
        (([1], work, [1], [2]), "too many arguments"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(params, message):
    with pytest.raises(dcp.DCPError, match=message) as caught:
        dcp.compute_for(*params)
    assert caught.value.code == "EINVALID"


def test_args_given_twice_or_not_a_list_are_refused():
    with pytest.raises(dcp.DCPError, match="once"):
        dcp.compute_for([1], work, [1], args=[2])
    with pytest.raises(dcp.DCPError, match="args must be a list or tuple"):
        dcp.compute_for([1], work, args=5)  # type: ignore[arg-type]
    with pytest.raises(dcp.DCPError, match="argument 1 is not JSON"):
        dcp.compute_for([1], work, args=[object()])


def test_bools_are_not_range_bounds():
    job = dcp.compute_for([True, False], work)
    assert job.input.wire()["values"] == [True, False]
    with pytest.raises(dcp.DCPError, match="must be an iterable"):
        dcp.compute_for(True, 5, work)


@given(
    start=st.integers(-1000, 1000),
    end=st.integers(-1000, 1000),
    step=st.integers(-50, 50).filter(bool),
)
def test_an_integer_range_has_as_many_slices_as_python_range_inclusive(start, end, step):
    expected = len(range(start, end + (1 if step > 0 else -1), step))
    assert range_slice_count(start, end, step) == expected
