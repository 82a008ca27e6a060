"""compute_for's arguments: DCP's inclusive ranges, iterables of values, and clear errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dcp
from dcp.client import inputs
from dcp.client.inputs import RangeInput, StreamInput, ValuesInput, range_slice_count
from dcp.protocol.inputs import span_of as expander

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


def test_a_generator_is_a_stream_read_lazily_in_batches():
    read = []

    def squares():
        for n in range(5):
            read.append(n)
            yield n * n

    job = dcp.compute_for(squares(), work)
    assert isinstance(job.input, StreamInput)
    assert read == [0]  # one value read ahead, to refuse an empty generator at once
    assert job.input.next_batch(3, 10**6) == [0, 1, 4]
    assert job.input.next_batch(3, 10**6) == [9, 16]
    assert job.input.exhausted and job.input.total == 5
    assert job.input.datum(2) == 1
    assert job.input.slice_of(16) == 5


def test_a_stream_batch_is_cut_by_size_too():
    stream = StreamInput(iter(["x" * 100] * 10))
    assert len(stream.next_batch(1000, 250)) == 3  # about 102 bytes of JSON each


def test_a_long_stream_forgets_its_inputs_past_the_limit(monkeypatch):
    monkeypatch.setattr(inputs, "REMEMBERED_STREAM_VALUES", 3)
    stream = StreamInput(iter(range(5)))
    assert stream.next_batch(10, 10**6) == [0, 1, 2, 3, 4]
    with pytest.raises(dcp.DCPError, match="streamed and had more than 3 values"):
        stream.datum(1)


def test_a_large_list_is_streamed_but_keeps_answering_key(monkeypatch):
    monkeypatch.setattr(inputs, "MAX_DEPLOY_BYTES", 100)
    job = dcp.compute_for(["x" * 20] * 10, work)
    assert isinstance(job.input, StreamInput)
    assert dcp.compute_for(["x"] * 3, work).input == ValuesInput(["x"] * 3)


def test_a_python_range_is_a_range_not_values():
    assert dcp.compute_for(range(1, 11), work).input == RangeInput(1, 10)
    assert dcp.compute_for(range(10, 0, -3), work).input.wire()["end"] == 1


def test_a_grouped_range_gives_lists_of_consecutive_values():
    job = dcp.compute_for(dcp.Range(1, 10, group=4), work)
    assert job.input.wire() == {"kind": "range", "start": 1, "end": 10, "step": 1, "group": 4}
    assert job.total == 3
    assert [job.input.datum(n) for n in (1, 3)] == [[1, 2, 3, 4], [9, 10]]
    assert job.input.slice_of(6) == 2
    assert job.input.slice_of([5, 6, 7, 8]) == 2
    with pytest.raises(KeyError):
        job.input.slice_of([6, 7])


def test_a_multirange_iterates_like_nested_loops():
    job = dcp.compute_for(dcp.MultiRange((1, 3), dcp.Range(10, 30, 10)), work)
    assert job.input.wire() == {
        "kind": "product",
        "ranges": [{"start": 1, "end": 3, "step": 1}, {"start": 10, "end": 30, "step": 10}],
    }
    assert job.total == 9
    assert [job.input.datum(n) for n in (1, 2, 4, 9)] == [[1, 10], [1, 20], [2, 10], [3, 30]]
    assert job.input.slice_of((2, 20)) == 5
    assert job.input.slice_of([3, 30]) == 9


def test_sparse_hands_specific_values():
    job = dcp.compute_for(dcp.Sparse([2, 3, 5, 7]), work)
    assert job.input.wire() == {"kind": "values", "values": [2, 3, 5, 7]}
    assert job.input.slice_of(5) == 3


def test_a_range_off_the_step_grid_is_cut():
    job = dcp.compute_for(0, 1000, 3, work)
    assert job.total == 334
    assert job.input.datum(334) == 999


def test_float_steps_are_exact_as_the_scheduler_computes_them():
    job = dcp.compute_for(0, 1, 0.1, work)
    assert job.total == 11
    assert job.input.datum(4) == 0.3
    assert job.input.slice_of(0.3) == 4
    assert job.input.datum(11) == 1.0


@given(
    start=st.integers(-1000, 1000) | st.decimals(-100, 100, places=3).map(float),
    step=st.sampled_from([1, 2, -3, 0.1, 0.25, -0.7, 1e-3]),
    count=st.integers(1, 40),
    group=st.none() | st.integers(1, 7),
)
def test_key_agrees_with_the_schedulers_expansion(start, step, count, group):
    end = float(start) + step * (count - 1) + step / 2
    client = RangeInput(start, end, step, group)
    spec = client.wire()
    server = expander("range", {k: v for k, v in spec.items() if k != "kind"})
    assert client.total == server.slices
    for number in {1, 2, client.total}:
        if number <= client.total:
            assert client.datum(number) == server.datum(number)
            assert client.slice_of(client.datum(number)) == number


def test_huge_integer_ranges_stay_exact():
    start = 10**30 + 1
    job = dcp.compute_for(start, start + 10**6, 7, work)
    server = expander("range", {k: v for k, v in job.input.wire().items() if k != "kind"})
    assert job.input.datum(12345) == server.datum(12345) == start + 12344 * 7
    assert job.input.slice_of(start + 12344 * 7) == 12345
    with pytest.raises(KeyError):
        job.input.slice_of(start + 1)


def test_multirange_key_agrees_with_the_scheduler():
    client = dcp.MultiRange((0, 1, 0.25), (3, 1, -1), dcp.Range(5, 6))
    server = expander("product", {"ranges": client.wire()["ranges"]})
    assert client.total == server.slices == 30
    for number in range(1, 31):
        assert client.datum(number) == server.datum(number)
        assert client.slice_of(client.datum(number)) == number


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
        ((range(0), work), "is empty"),
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


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: dcp.Range(1, 5, group=0), "group must be an integer"),
        (lambda: dcp.Range(1, 5, group=2.5), "group must be an integer"),
        (lambda: dcp.Range(1, "5"), "must be numbers"),
        (lambda: dcp.MultiRange(), "at least one range"),
        (lambda: dcp.MultiRange(dcp.Range(1, 4, group=2)), "cannot be grouped"),
        (lambda: dcp.MultiRange("ab"), "MultiRange takes"),
        (lambda: dcp.MultiRange(*[(1, 2)] * 9), "at most 8 ranges"),
    ],
)
def test_bad_input_sets_are_refused_when_made(make, message):
    with pytest.raises(dcp.DCPError, match=message) as caught:
        make()
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
