"""Fetching results: ranges, pages of at most MAX_RESULTS_PER_FETCH, and slices in flight."""

from __future__ import annotations

from urllib.parse import urlencode

from portal.scheduler import services as scheduler

from .conftest import compute, error_of

DOUBLE = {"language": "js", "function": "function (x) { return x * 2 }"}


def computed_job(caller, volunteer, count: int) -> str:
    response = caller.post("/api/v0/job", {"work": DOUBLE, "slices": list(range(1, count + 1))})
    job_id = response.json()["jobId"]
    compute(job_id, volunteer)
    return job_id


def values(response) -> list[tuple[int, object]]:
    return [(r["sliceNumber"], r["value"]) for r in response.json()["results"]]


def test_all_results_in_slice_order_without_a_range(bearer, volunteer):
    job_id = computed_job(bearer, volunteer, 5)
    response = bearer.get(f"/api/v0/job/{job_id}/result")
    assert response.status_code == 200
    body = response.json()
    assert values(response) == [(n, 2 * n) for n in range(1, 6)]
    assert (body["totalSlices"], body["completedSlices"], body["activeSlices"]) == (5, 5, 0)
    assert body["nextRanges"] == []


def test_ranges_select_slices_and_may_overlap_or_repeat(bearer, volunteer):
    job_id = computed_job(bearer, volunteer, 40)
    response = bearer.get(f"/api/v0/job/{job_id}/result?range=1-3&range=33-35&range=2-4&range=40")
    assert [n for n, _ in values(response)] == [1, 2, 3, 4, 33, 34, 35, 40]


def test_a_range_past_the_last_slice_is_cut(bearer, volunteer):
    job_id = computed_job(bearer, volunteer, 3)
    response = bearer.get(f"/api/v0/job/{job_id}/result?range=2-9999999999&range=50-60")
    assert [n for n, _ in values(response)] == [2, 3]
    assert response.json()["nextRanges"] == []


def test_malformed_ranges_are_400(bearer, volunteer):
    job_id = computed_job(bearer, volunteer, 1)
    for bad in ("0-3", "5-2", "a-b", "1-", "-1", "1-2-3", "", "99999999999"):
        response = bearer.get(f"/api/v0/job/{job_id}/result?{urlencode({'range': bad})}")
        assert response.status_code == 400, bad
        assert error_of(response)["code"] == "EINVALID"
    too_many = "&".join(["range=1"] * 101)
    assert bearer.get(f"/api/v0/job/{job_id}/result?{too_many}").status_code == 400


def test_results_come_in_pages_that_say_where_to_go_on(bearer, volunteer, settings):
    settings.MAX_RESULTS_PER_FETCH = 4
    job_id = computed_job(bearer, volunteer, 11)
    first = bearer.get(f"/api/v0/job/{job_id}/result").json()
    assert [r["sliceNumber"] for r in first["results"]] == [1, 2, 3, 4]
    assert first["nextRanges"] == ["5-11"]
    seen, query = [], ""
    while True:
        page = bearer.get(f"/api/v0/job/{job_id}/result{query}").json()
        seen += [r["sliceNumber"] for r in page["results"]]
        if not page["nextRanges"]:
            break
        query = "?" + "&".join(f"range={r}" for r in page["nextRanges"])
    assert seen == list(range(1, 12))


def test_a_page_of_several_ranges_continues_with_what_is_left_of_them(bearer, volunteer, settings):
    settings.MAX_RESULTS_PER_FETCH = 3
    job_id = computed_job(bearer, volunteer, 20)
    page = bearer.get(f"/api/v0/job/{job_id}/result?range=1-2&range=10-12&range=15").json()
    assert [r["sliceNumber"] for r in page["results"]] == [1, 2, 10]
    assert page["nextRanges"] == ["11-12", "15-15"]


def test_active_slices_are_those_a_worker_holds_now(bearer):
    response = bearer.post("/api/v0/job", {"work": DOUBLE, "slices": [1, 2, 3]})
    job_id = response.json()["jobId"]
    scheduler.claim_slices(worker="w-1", limit=2)
    body = bearer.get(f"/api/v0/job/{job_id}/result").json()
    assert (body["activeSlices"], body["completedSlices"], body["results"]) == (2, 0, [])
    assert bearer.get(f"/api/v0/job/{job_id}/status").json()["distributedSlices"] == 2


def test_results_of_any_json_value_come_back_as_stored(bearer, volunteer):
    slices = ["text", [1, None, {"a": 2}], {"nested": [True, False]}, 1.5, 0, ""]
    response = bearer.post("/api/v0/job", {"work": DOUBLE, "slices": slices})
    job_id = response.json()["jobId"]
    compute(job_id, volunteer, double=False)
    assert [v for _, v in values(bearer.get(f"/api/v0/job/{job_id}/result"))] == slices


def test_a_page_of_large_results_stops_at_its_byte_budget(bearer, volunteer, settings):
    settings.MAX_RESULTS_PAGE_BYTES = 2_500
    text = {"language": "js", "function": "function (x) { return x }"}
    response = bearer.post("/api/v0/job", {"work": text, "slices": ["x" * 1000] * 5 + ["y"]})
    job_id = response.json()["jobId"]
    compute(job_id, volunteer, double=False)
    seen, query, pages = [], "", 0
    while True:
        page = bearer.get(f"/api/v0/job/{job_id}/result{query}").json()
        pages += 1
        assert len(page["results"]) <= 2  # two 1 kB results fit in 2.5 kB, three do not
        seen += [r["sliceNumber"] for r in page["results"]]
        if not page["nextRanges"]:
            break
        query = "?" + "&".join(f"range={r}" for r in page["nextRanges"])
    assert seen == [1, 2, 3, 4, 5, 6] and pages == 3

    settings.MAX_RESULTS_PAGE_BYTES = 10  # one result always comes, however large
    assert len(bearer.get(f"/api/v0/job/{job_id}/result").json()["results"]) == 1
