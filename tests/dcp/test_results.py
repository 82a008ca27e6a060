"""ResultHandle: results ordered by slice, readable like a list and by slice number."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import dcp
from dcp import ResultHandle
from dcp.client.inputs import RangeInput, ValuesInput
from dcp.client.results import parse_slice_numbers

from .conftest import KEYS
from .fake_scheduler import FakeScheduler, PendingScheduler

pytestmark: list[pytest.MarkDecorator] = []


def work(x):
    return x * 2


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


def test_lookup_value_finds_a_range_slice_arithmetically():
    data = RangeInput(0, 1, 0.1)
    handle = ResultHandle([(n, f"r{n}") for n in range(1, 12)], data)
    assert handle.lookup_value(0.3) == "r4"
    assert handle.lookup_value(1) == "r11"
    with pytest.raises(KeyError):
        handle.lookup_value(0.35)
    with pytest.raises(KeyError):
        handle.lookup_value(2)


def test_lookup_value_in_groups_products_and_values():
    grouped = ResultHandle([(1, "a"), (2, "b")], dcp.Range(1, 7, group=4))
    assert grouped.lookup_value(6) == "b"
    assert grouped.lookup_value([1, 2, 3, 4]) == "a"
    product = ResultHandle([(n, n) for n in range(1, 7)], dcp.MultiRange((1, 2), (1, 3)))
    assert product.lookup_value((2, 1)) == 4
    values = ResultHandle([(1, "x"), (2, "y")], ValuesInput([(1, 2), {"k": 1}]))
    assert values.lookup_value([1, 2]) == "x"
    assert values.lookup_value({"k": 1}) == "y"
    with pytest.raises(KeyError):
        values.lookup_value("nope")


def test_lookup_value_of_a_slice_without_result_is_a_key_error():
    handle = ResultHandle([(1, "a")], RangeInput(1, 3))
    with pytest.raises(KeyError):
        handle.lookup_value(2)


@pytest.mark.parametrize(
    ("spec", "numbers"),
    [
        (range(1, 11), list(range(1, 11))),
        ("1-10", list(range(1, 11))),
        (" 3 - 5 ,9", [3, 4, 5, 9]),
        ("7", [7]),
        ((1, 10), list(range(1, 11))),
        ([9, 2, 2], [2, 9]),
        (4, [4]),
    ],
)
def test_slice_numbers_are_read_from_ranges_spans_pairs_and_lists(spec, numbers):
    assert parse_slice_numbers(spec) == numbers


@pytest.mark.parametrize("spec", ["1-x", "", 1.5, {"a": 1}, range(0, 3)])
def test_bad_slice_numbers_are_refused(spec):
    with pytest.raises(dcp.DCPError):
        parse_slice_numbers(spec)


def test_fetch_asks_the_scheduler_for_those_slices(scheduler):
    results = dcp.compute_for(1, 10, work).exec(**KEYS)
    part = results.fetch("2-4")
    assert part.entries() == [(2, 4), (3, 6), (4, 8)]
    assert part.key(3) == 3
    assert results.fetch(range(9, 11)).values() == [18, 20]
    assert results.fetch([1, 10]).values() == [2, 20]
    last = scheduler.requests("results")[-1]
    assert (last["start"], last["end"]) == (1, 10)


def test_a_handle_without_a_scheduler_cannot_fetch():
    with pytest.raises(dcp.DCPError, match="not tied to a scheduler job"):
        ResultHandle([], RangeInput(1, 2)).fetch("1")


def test_attach_follows_a_job_deployed_elsewhere_to_its_results(keystores):
    fake = PendingScheduler()
    fake.describe_jobs = False  # a scheduler that does not say what the job is
    fake.start()
    dcp.init(fake.url)
    try:
        deployed = dcp.compute_for([3, 4, 5], work)
        deployed.on("accepted", lambda _: (_ for _ in ()).throw(SystemExit))  # "crash"
        with pytest.raises(SystemExit):
            deployed.exec()
        job = dcp.Job.attach(deployed.id)
        assert job.total == 3
        assert job.status["status"] == "running"
        threading.Timer(0.3, fake.call, [fake.end(fake.job_by_id(job.id), "finished")]).start()
        results = job.wait()
        assert results.values() == [6, 8, 10]
        assert job.fetch("2").values() == [8]
        with pytest.raises(dcp.DCPError, match="not known here"):
            results.key(1)
        with pytest.raises(dcp.DCPError) as caught:
            dcp.Job.attach("job-404")
        assert caught.value.code == "ENOJOB"
    finally:
        fake.stop()


def crashed_deploy(input_set: Any, **options: Any) -> str:
    """Deploy a job and stop following it at once, as a crashed process would; its id."""
    deployed = dcp.compute_for(input_set, work, **options)
    deployed.on("accepted", lambda _: (_ for _ in ()).throw(SystemExit))
    with pytest.raises(SystemExit):
        deployed.exec(slice_payment_offer="0.25")
    assert deployed.id is not None
    return deployed.id


def finish_soon(fake: FakeScheduler, job_id: str) -> None:
    threading.Timer(0.3, fake.call, [fake.end(fake.job_by_id(job_id), "finished")]).start()


def test_an_attached_values_job_answers_key_and_lookup_value_from_the_scheduler(pending):
    pending.inputs_page = 2  # the values come in several `inputs` pages
    job = dcp.Job.attach(crashed_deploy([3, 4, 5, (6, 7), "x"]))
    assert job.total == 5
    finish_soon(pending, job.id)
    results = job.wait()
    assert [results.key(n) for n in range(1, 4)] == [3, 4, 5]
    assert results.key(4) == [6, 7]
    assert results.lookup_value(5) == 10
    assert results.lookup_value((6, 7)) == [6, 7, 6, 7]
    assert results.lookup_value("x") == "xx"
    assert len(pending.requests("inputs")) >= 2


def test_an_attached_range_job_answers_key_and_lookup_value_arithmetically(pending):
    job = dcp.Job.attach(crashed_deploy(dcp.Range(0, 1, 0.25)))
    assert job.input == dcp.Range(0, 1, 0.25)
    assert job.work == {"language": "python", "source": "def work(x):\n    return x * 2\n"}
    finish_soon(pending, job.id)
    results = job.wait()
    assert results.key(4) == 0.75
    assert results.lookup_value(0.5) == 1.0
    assert pending.requests("inputs") == []


def test_an_attached_open_job_takes_slices_at_its_own_offer(pending):
    job = dcp.Job.attach(crashed_deploy([1, 2], auto_close=False))
    assert job.total == 2 and not job.auto_close
    assert job.add_slices([10, 20]) == 4  # no offer given: the scheduler told it
    batch = pending.requests("add_slices")[-1]
    assert batch["payment"]["max_total"] == "0.5"  # 2 values at the deploy's 0.25
    assert job.close() == 4
    results = job.wait()
    assert results.values() == [2, 4, 20, 40]
    assert results.key(3) == 10
    assert results.lookup_value(2) == 4


def test_jobs_lists_the_identitys_jobs_newest_first(scheduler, keystores):
    first = dcp.compute_for([1], work)
    first.public = {"name": "first"}
    first.exec()
    dcp.compute_for([2], work).exec()
    listed = dcp.jobs()
    assert [(job["job"], job["name"], job["status"]) for job in listed] == [
        ("job-2", "", "finished"),
        ("job-1", "first", "finished"),
    ]
    # The session the last exec() left open is reused: no new connection, no new hello.
    assert [frame["type"] for frame in scheduler.frames[-2:]] == ["deploy", "jobs"]
