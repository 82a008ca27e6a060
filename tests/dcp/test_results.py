"""ResultHandle: results ordered by slice, readable like a list and by slice number."""

from __future__ import annotations

import pytest

from dcp import ResultHandle
from dcp.inputs import RangeInput, ValuesInput

pytestmark: list[pytest.MarkDecorator] = []


@pytest.fixture
def handle() -> ResultHandle:
    data = RangeInput(10, 50, 10)  # slices 1..5 have data 10, 20, 30, 40, 50
    return ResultHandle([(3, "c"), (1, "a"), (5, "e"), (2, "b"), (4, "d")], data.datum)


def test_values_keys_and_entries_are_in_slice_order(handle):
    assert handle.values() == ["a", "b", "c", "d", "e"]
    assert handle.keys() == [1, 2, 3, 4, 5]
    assert handle.entries() == [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]
    assert handle.from_entries() == {1: "a", 2: "b", 3: "c", 4: "d", 5: "e"}


def test_it_reads_like_a_list(handle):
    assert len(handle) == handle.len() == 5
    assert list(handle) == ["a", "b", "c", "d", "e"]
    assert handle[0] == "a"
    assert handle[-1] == "e"
    assert handle[1:3] == ["b", "c"]
    with pytest.raises(IndexError):
        handle[5]


def test_key_is_the_input_datum_of_a_slice(handle):
    assert handle.key(1) == 10
    assert handle.key(5) == 50
    with pytest.raises(IndexError):
        handle.key(6)


def test_key_of_values_is_the_value_as_given():
    data = ValuesInput([("x", 1), "y"], [["x", 1], "y"])
    handle = ResultHandle([(1, 2), (2, 3)], data.datum)
    assert handle.key(1) == ("x", 1)
    assert handle.key(2) == "y"


def test_repr_previews_the_values(handle):
    assert repr(handle) == "ResultHandle(['a', 'b', 'c', 'd', 'e'], len=5)"
