"""The charts' data over HTTP: a worker's earnings and a job's payments over time, bucketed by
real SQL from the ledger's payments, to their owner only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from dcp.protocol.credits import to_units
from portal.bank.models import Txn
from portal.bank.selectors import bucket_start, bucket_width
from portal.scheduler.models import Job, JobStatus, WorkerTally
from portal.scheduler.services import claim_slices, record_results
from portal.wallet.models import KeyKind
from portal.wallet.services import create_key
from tests.web.test_jobs_tab import default_address, deploy


def compute(job: Job, volunteer: Any, count: int, *, payee_address: str = "") -> None:
    """A worker of `volunteer` computes `count` slices of `job` (the oldest job with work) and
    is paid into `payee_address` (the volunteer's default account unless named)."""
    worker = f"worker-{uuid.uuid4().hex[:8]}"
    task = claim_slices(worker=worker, limit=count, user=volunteer)
    assert task is not None and task.job.id == job.id
    record_results(
        worker=worker,
        payee=volunteer,
        payee_address=payee_address or default_address(volunteer),
        job_id=job.id,
        results=[(number, datum * datum) for number, datum in task.slices],
        errors=[],
        batch_key=uuid.uuid4().hex,
    )


def client_of(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def paid_at(job: Job, *moments: datetime) -> None:
    """Date the job's payments, oldest first, at these moments."""
    payments = Txn.objects.filter(kind="payment", memo__endswith=f"of job {job.id}").order_by("id")
    assert payments.count() == len(moments)
    for payment, moment in zip(payments, moments, strict=True):
        Txn.objects.filter(pk=payment.pk).update(created_at=moment)


def credits_of(document: dict[str, Any]) -> Decimal:
    return sum((Decimal(bucket["credits"]) for bucket in document["buckets"]), Decimal(0))


def results_of(document: dict[str, Any]) -> int:
    return sum(bucket["results"] for bucket in document["buckets"])


def bucket_of(document: dict[str, Any], moment: datetime) -> dict[str, Any]:
    """The bucket that holds `moment`."""
    width = timedelta(seconds=document["bucket_seconds"])
    for bucket in document["buckets"]:
        start = datetime.fromisoformat(bucket["start"])
        if start <= moment < start + width:
            return bucket
    raise AssertionError(f"no bucket holds {moment}")


# --- a job's history --------------------------------------------------------------------------


def test_a_jobs_history_adds_up_to_what_it_paid_and_computed(first_dev, volunteer):
    job = deploy(first_dev, slices=10, offer="0.1")
    began = timezone.now() - timedelta(hours=2) + timedelta(minutes=1)
    Job.objects.filter(pk=job.pk).update(created_at=began)
    for count in (3, 4, 2):
        compute(job, volunteer, count)
    moments = [began + timedelta(minutes=m) for m in (10, 50, 100)]
    paid_at(job, *moments)

    document = client_of(first_dev).get(f"/portal/jobs/{job.id}/history.json").json()

    job.refresh_from_db()
    assert results_of(document) == job.computed == 9
    assert credits_of(document) == Decimal("0.9") == Decimal(document["total"]["credits"])
    assert to_units(document["total"]["credits"]) == job.paid
    assert [bucket_of(document, m)["results"] for m in moments] == [3, 4, 2]
    assert bucket_of(document, moments[1])["credits"] == "0.4"
    assert 55 <= len(document["buckets"]) <= 61  # about sixty points over its two hours
    assert document["bucket_seconds"] == 120
    assert document["status"] == "running" and not document["empty"]


def test_a_finished_jobs_history_ends_when_it_finished(first_dev, volunteer):
    job = deploy(first_dev, slices=4, offer="0.25")
    compute(job, volunteer, 4)
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED

    document = client_of(first_dev).get(f"/portal/jobs/{job.id}/history.json").json()

    assert datetime.fromisoformat(document["end"]) == job.finished_at
    assert datetime.fromisoformat(document["start"]) <= job.created_at
    assert results_of(document) == 4 and credits_of(document) == Decimal(1)


def test_a_verified_jobs_history_counts_every_paid_result(first_dev, volunteer, stranger):
    job = deploy(first_dev, slices=4, offer="0.1", verify={"quorum": 2})
    compute(job, volunteer, 4)
    compute(job, stranger, 2)  # two slices agree: both users are paid for them

    document = client_of(first_dev).get(f"/portal/jobs/{job.id}/history.json").json()

    assert results_of(document) == 4  # 2 slices x 2 agreeing results
    assert credits_of(document) == Decimal("0.4")
    assert client_of(volunteer).get("/portal/worker/history.json").json()["total"] == {
        "credits": "0.2",
        "results": 2,
    }


def test_a_job_without_payments_has_an_empty_chart_that_says_so(first_dev):
    job = deploy(first_dev, slices=3)

    document = client_of(first_dev).get(f"/portal/jobs/{job.id}/history.json").json()

    assert document["empty"] is True
    assert document["message"] == (
        "No results paid yet: the chart fills in as workers return results."
    )
    assert document["buckets"] and results_of(document) == 0
    assert document["total"] == {"credits": "0", "results": 0}


def test_another_users_job_history_is_not_found(first_dev, stranger):
    job = deploy(first_dev, slices=3)

    assert client_of(stranger).get(f"/portal/jobs/{job.id}/history.json").status_code == 404
    assert client_of(first_dev).get("/portal/jobs/no-such-job/history.json").status_code == 404


def test_the_histories_need_a_signed_in_user(client, first_dev):
    job = deploy(first_dev, slices=3)
    for url in ("/portal/worker/history.json", f"/portal/jobs/{job.id}/history.json"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


# --- a worker's history -----------------------------------------------------------------------


def test_a_workers_history_adds_up_over_the_day_and_the_month(first_dev, volunteer):
    job = deploy(first_dev, slices=10, offer="0.1")
    for count in (1, 2, 3, 4):
        compute(job, volunteer, count)
    now = timezone.now()
    ago = [timedelta(minutes=30), timedelta(hours=5), timedelta(days=3), timedelta(days=40)]
    paid_at(job, *(now - a for a in ago))
    client = client_of(volunteer)

    day = client.get("/portal/worker/history.json").json()
    month = client.get("/portal/worker/history.json?period=month").json()

    assert (day["period"], len(day["buckets"]), day["bucket_seconds"]) == ("day", 24, 3600)
    assert (results_of(day), credits_of(day)) == (3, Decimal("0.3"))
    assert bucket_of(day, now - ago[1])["results"] == 2
    assert (len(month["buckets"]), month["bucket_seconds"]) == (30, 86400)
    assert (results_of(month), credits_of(month)) == (6, Decimal("0.6"))
    assert bucket_of(month, now - ago[2]) == {
        "start": bucket_start(now - ago[2], timedelta(days=1)).isoformat(),
        "credits": "0.3",
        "results": 3,
    }
    assert WorkerTally.objects.get(user=volunteer).slices == 10  # the fourth, 40 days ago


def test_a_history_read_again_shows_the_payments_made_since(first_dev, volunteer):
    job = deploy(first_dev, slices=10, offer="0.1")
    compute(job, volunteer, 2)
    three_days_ago = timezone.now() - timedelta(days=3)
    paid_at(job, three_days_ago)
    client = client_of(volunteer)
    before = client.get("/portal/worker/history.json?period=month").json()

    compute(job, volunteer, 3)
    after = client.get("/portal/worker/history.json?period=month").json()

    assert (results_of(before), results_of(after)) == (2, 5)
    assert bucket_of(after, three_days_ago) == bucket_of(before, three_days_ago)
    assert after["buckets"][-1]["results"] == 3  # today's


def test_a_workers_history_counts_every_account_of_theirs_after_commission(
    first_dev, volunteer, settings
):
    settings.SCHEDULER_COMMISSION_PERCENT = "10"
    savings = create_key(user=volunteer, kind=KeyKind.ACCOUNT, label="savings")
    job = deploy(first_dev, slices=6, offer="0.1")
    compute(job, volunteer, 2)
    compute(job, volunteer, 3, payee_address=savings.address)

    document = client_of(volunteer).get("/portal/worker/history.json").json()

    assert document["total"] == {"credits": "0.45", "results": 5}  # 5 x 0.1, less 10%
    assert results_of(document) == 5 and credits_of(document) == Decimal("0.45")


def test_a_workers_history_is_their_own(first_dev, volunteer, stranger):
    job = deploy(first_dev, slices=4)
    compute(job, volunteer, 4)

    document = client_of(stranger).get("/portal/worker/history.json").json()

    assert document["empty"] is True and results_of(document) == 0


def test_an_empty_workers_history_says_there_is_no_data_yet(volunteer):
    document = client_of(volunteer).get("/portal/worker/history.json?period=month").json()

    assert document["empty"] is True
    assert document["message"] == "No results paid into your accounts in the last 30 days yet."
    assert len(document["buckets"]) == 30
    assert all(b["credits"] == "0" and b["results"] == 0 for b in document["buckets"])


def test_an_unknown_period_is_refused_with_the_ones_there_are(volunteer):
    response = client_of(volunteer).get("/portal/worker/history.json?period=year")

    assert response.status_code == 400
    assert response.json() == {"error": "period must be day or month, not 'year'"}


# --- the pages --------------------------------------------------------------------------------


def test_the_worker_and_jobs_tabs_offer_their_charts(first_dev):
    job = deploy(first_dev, slices=3, public={"name": "squares"})
    client = client_of(first_dev)

    worker = client.get("/portal/worker/").content.decode()
    jobs = client.get("/portal/jobs/").content.decode()

    assert 'data-history-url="/portal/worker/history.json"' in worker
    assert f'data-history-url="/portal/jobs/{job.id}/history.json"' in jobs
    assert 'aria-expanded="false"' in jobs


# --- bucket widths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "width"),
    [
        (timedelta(seconds=3), timedelta(seconds=1)),
        (timedelta(minutes=5), timedelta(seconds=5)),
        (timedelta(minutes=7), timedelta(seconds=10)),
        (timedelta(hours=2), timedelta(minutes=2)),
        (timedelta(days=1), timedelta(minutes=30)),
        (timedelta(days=30), timedelta(hours=12)),
        (timedelta(days=365), timedelta(days=7)),
        (timedelta(days=1000), timedelta(days=21)),
    ],
)
def test_a_span_is_cut_into_at_most_sixty_nice_buckets(span, width):
    assert bucket_width(span, 60) == width
    assert span / width <= 60


def test_buckets_are_aligned_on_whole_units():
    moment = datetime(2024, 3, 9, 14, 37, 21, tzinfo=UTC)

    assert bucket_start(moment, timedelta(hours=1)) == datetime(2024, 3, 9, 14, tzinfo=UTC)
    assert bucket_start(moment, timedelta(minutes=15)) == datetime(2024, 3, 9, 14, 30, tzinfo=UTC)
    assert bucket_start(moment, timedelta(days=1)) == datetime(2024, 3, 9, tzinfo=UTC)
