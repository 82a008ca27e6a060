"""The Jobs tab over HTTP: own jobs only, live status, Cancel with its refund, the results file."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import Client
from eth_account import Account

from dcp.protocol.credits import to_units
from portal.bank.selectors import balance_of
from portal.scheduler.models import Job, JobStatus, Slice, SliceStatus
from portal.scheduler.notify import WORKERS_GROUP, job_group
from portal.scheduler.services import JobSpec, claim_slices, deploy_job, record_results
from portal.wallet.models import Key
from portal.web import jobs as jobs_views
from tests.web.test_pages import csrf_post, messages_of


@pytest.fixture
def browser_client(first_dev) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(first_dev)
    return client


def default_address(user) -> str:
    return Key.objects.get(user=user, is_default=True).address


def deploy(
    owner,
    *,
    slices: int = 10,
    offer: str = "0.1",
    public: dict | None = None,
    verify: dict | None = None,
) -> Job:
    spec = JobSpec(
        ref=uuid.uuid4().hex,
        language="python",
        source="def work(x):\n    return x * x\n",
        args=[],
        input_kind="range",
        input_spec={"start": 1, "end": slices, "step": 1},
        offer=to_units(offer),
        public=public or {},
        verify=verify,
    )
    identity = Account.create().address
    job, _ = deploy_job(owner=owner, identity=identity, payer=default_address(owner), spec=spec)
    return job


def compute(job: Job, volunteer, count: int, *, lie: bool = False) -> None:
    """A worker of `volunteer` computes `count` slices of `job`: value = datum squared (plus
    one when it lies)."""
    worker = f"worker-{uuid.uuid4().hex[:8]}"
    task = claim_slices(worker=worker, limit=count, user=volunteer)
    assert task is not None and task.job.id == job.id, "the job must be the oldest with work"
    record_results(
        worker=worker,
        payee=volunteer,
        payee_address=default_address(volunteer),
        job_id=job.id,
        results=[(number, datum * datum + lie) for number, datum in task.slices],
        errors=[],
        batch_key=uuid.uuid4().hex,
    )


def rows_of(html: str) -> list[str]:
    return re.findall(r'<tr class="job-row".*?</tr>', html, flags=re.S)


# --- the list ---------------------------------------------------------------------------------


def test_the_jobs_tab_needs_a_signed_in_user(client, db):
    for url in ("/portal/jobs/", "/portal/jobs/status.json"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_a_user_without_jobs_is_told_how_to_deploy_one(browser_client):
    html = browser_client.get("/portal/jobs/").content.decode()
    assert "No jobs yet: deploy one from Python (see the README's Deploying jobs" in html
    assert 'aria-current="page">Jobs</a>' in html


def test_the_list_shows_own_jobs_newest_first_with_their_progress(
    first_dev, stranger, volunteer, browser_client
):
    older = deploy(first_dev, slices=10, public={"name": "squares"})
    compute(older, volunteer, 3)
    newer = deploy(first_dev, slices=4)
    deploy(stranger, slices=5, public={"name": "eve's secret job"})

    html = browser_client.get("/portal/jobs/").content.decode()
    rows = rows_of(html)
    assert [re.search(r'data-job-id="(\w+)"', row).group(1) for row in rows] == [newer.id, older.id]
    assert "eve" not in html
    assert "squares" in rows[1] and newer.id in rows[0]  # a job without a name shows its id
    assert '<progress max="10" value="3"' in rows[1]
    assert re.search(r"data-computed>3</span> / <span data-total>10<", rows[1])
    assert re.search(r'data-testid="job-progress"', rows[1])


def test_credits_spent_and_escrow_held_are_shown_for_a_running_job(
    first_dev, volunteer, browser_client
):
    job = deploy(first_dev, slices=10, offer="0.1")
    compute(job, volunteer, 3)
    row = rows_of(browser_client.get("/portal/jobs/").content.decode())[0]
    assert re.search(r'data-testid="job-paid">0.3<', row)
    assert re.search(r'data-testid="job-escrow">0.7<', row)
    assert ">Cancel</button>" in row
    assert f'href="/portal/jobs/{job.id}/results.json"' in row


def test_a_verified_job_shows_its_votes_and_holds_escrow_for_its_quorum(
    first_dev, volunteer, stranger, browser_client
):
    job = deploy(first_dev, slices=4, offer="0.1", verify={"quorum": 2})
    compute(job, volunteer, 4)
    compute(job, stranger, 2, lie=True)
    row = rows_of(browser_client.get("/portal/jobs/").content.decode())[0]
    verification = "verified by 2 users · 4 pending · 2 disputed · 0 rejected"
    assert f'data-testid="job-verification">{verification}<' in row
    assert re.search(r'data-testid="job-escrow">0.8<', row)  # 4 slices x 2 results x 0.1
    progress = browser_client.get(f"/portal/jobs/status.json?job={job.id}").json()
    assert progress["jobs"][0]["verification"] == verification


def test_a_finished_job_has_no_cancel_button_and_holds_nothing(
    first_dev, volunteer, browser_client
):
    job = deploy(first_dev, slices=2, offer="0.5")
    compute(job, volunteer, 2)
    row = rows_of(browser_client.get("/portal/jobs/").content.decode())[0]
    assert 'data-testid="job-status" data-status="finished">finished<' in row
    assert ">Cancel</button>" not in row
    assert re.search(r'data-testid="job-paid">1<', row)


def test_public_description_and_link_are_shown_and_the_link_opens_safely(first_dev, browser_client):
    deploy(
        first_dev,
        public={
            "name": "primes",
            "description": "Counting <primes> & such",
            "link": "https://example.com/primes",
        },
    )
    row = rows_of(browser_client.get("/portal/jobs/").content.decode())[0]
    assert "Counting &lt;primes&gt; &amp; such" in row
    assert '<a class="job-link" href="https://example.com/primes" rel="noopener"' in row


def test_a_link_that_is_not_http_never_becomes_an_href(first_dev, browser_client):
    job = deploy(first_dev, public={"name": "sly"})
    Job.objects.filter(pk=job.pk).update(public={"name": "sly", "link": "javascript:alert(1)"})
    html = browser_client.get("/portal/jobs/").content.decode()
    assert "javascript:" not in html


# --- cancel -----------------------------------------------------------------------------------


def listen(*groups: str) -> tuple[Any, str]:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    for group in groups:
        async_to_sync(layer.group_add)(group, channel)
    return layer, channel


@pytest.mark.django_db(transaction=True)  # announcements go out when a transaction commits
def test_cancel_refunds_the_escrow_and_tells_the_client_and_the_workers(
    first_dev, volunteer, browser_client
):
    payer = default_address(first_dev)
    job = deploy(first_dev, slices=10, offer="0.1", public={"name": "squares"})
    compute(job, volunteer, 3)
    assert balance_of(payer) == to_units("9")
    layer, channel = listen(job_group(job.id), WORKERS_GROUP)

    response = csrf_post(browser_client, "/portal/jobs/", f"/portal/jobs/{job.id}/cancel/", {})

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.cancel_code == "ECANCELLED"
    assert balance_of(payer) == to_units("9.7")  # 10 less the 0.3 paid for three slices
    assert balance_of(default_address(volunteer)) == to_units("0.3")
    page = browser_client.get(response["Location"])
    assert messages_of(page) == ["Job squares cancelled; unspent credits refunded."]
    assert 'data-status="cancelled">cancelled<' in page.content.decode()
    told = [async_to_sync(layer.receive)(channel) for _ in range(2)]
    assert told[0] == {
        "type": "job.event",
        "job": job.id,
        "event": "cancel",
        "data": {"code": "ECANCELLED", "reason": job.cancel_reason},
    }
    assert told[1] == {"type": "job.abort", "job": job.id}


def test_cancelling_someone_elses_job_is_not_found_and_changes_nothing(
    first_dev, stranger, browser_client
):
    theirs = deploy(stranger, slices=10, offer="0.1")
    response = csrf_post(browser_client, "/portal/jobs/", f"/portal/jobs/{theirs.id}/cancel/", {})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == JobStatus.RUNNING
    assert balance_of(default_address(stranger)) == to_units("9")


def test_a_forged_cancel_without_csrf_token_is_refused(first_dev, browser_client):
    job = deploy(first_dev, slices=10, offer="0.1")
    response = browser_client.post(f"/portal/jobs/{job.id}/cancel/")
    assert response.status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert balance_of(default_address(first_dev)) == to_units("9")


def test_cancel_is_a_post_only(first_dev, browser_client):
    job = deploy(first_dev)
    assert browser_client.get(f"/portal/jobs/{job.id}/cancel/").status_code == 405


def test_cancelling_a_job_that_has_ended_says_so_and_moves_nothing(
    first_dev, volunteer, browser_client
):
    job = deploy(first_dev, slices=2, offer="0.5", public={"name": "done"})
    compute(job, volunteer, 2)
    response = csrf_post(browser_client, "/portal/jobs/", f"/portal/jobs/{job.id}/cancel/", {})
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED
    assert balance_of(default_address(first_dev)) == to_units("9")
    page = browser_client.get(response["Location"])
    assert messages_of(page) == ["Job done had already ended: finished."]


# --- results file -----------------------------------------------------------------------------


def download(client: Client, job: Job) -> tuple[Any, dict[str, Any]]:
    response = client.get(f"/portal/jobs/{job.id}/results.json")
    return response, json.loads(b"".join(response.streaming_content))


def test_the_results_file_is_an_attachment_named_for_the_job(first_dev, volunteer, browser_client):
    job = deploy(first_dev, slices=5, public={"name": "squares"})
    compute(job, volunteer, 3)
    response, document = download(browser_client, job)
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="{job.id}-results.json"'
    assert document == {
        "job": job.id,
        "name": "squares",
        "status": "running",
        "total": 5,
        "computed": 3,
        "results": [{"slice": 1, "value": 1}, {"slice": 2, "value": 4}, {"slice": 3, "value": 9}],
    }


def test_the_results_file_is_in_slice_order_across_chunks(first_dev, browser_client, monkeypatch):
    monkeypatch.setattr(jobs_views, "RESULTS_CHUNK", 3)
    job = deploy(first_dev, slices=8)
    # Rows stored out of order, one slice without a result: the file follows slice numbers.
    for number in (7, 2, 8, 1, 5, 3, 6):
        Slice.objects.create(job=job, number=number, status=SliceStatus.DONE, result=[number])
    Slice.objects.create(job=job, number=4, status=SliceStatus.LEASED, worker="w")
    _, document = download(browser_client, job)
    assert [item["slice"] for item in document["results"]] == [1, 2, 3, 5, 6, 7, 8]
    assert all(item["value"] == [item["slice"]] for item in document["results"])


def test_a_job_without_results_gives_an_empty_list(first_dev, browser_client):
    job = deploy(first_dev, slices=3)
    _, document = download(browser_client, job)
    assert document["results"] == [] and document["computed"] == 0


def test_someone_elses_results_are_not_found(first_dev, stranger, browser_client):
    theirs = deploy(stranger)
    assert browser_client.get(f"/portal/jobs/{theirs.id}/results.json").status_code == 404


# --- status.json ------------------------------------------------------------------------------


def test_status_lists_own_running_jobs_with_their_progress(
    first_dev, stranger, volunteer, browser_client
):
    finished = deploy(first_dev, slices=1)
    compute(finished, volunteer, 1)
    running = deploy(first_dev, slices=10, offer="0.1")
    compute(running, volunteer, 4)
    deploy(stranger)

    response = browser_client.get("/portal/jobs/status.json")
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {
        "jobs": [
            {
                "id": running.id,
                "status": "running",
                "total": 10,
                "computed": 4,
                "paid": "0.4",
                "escrow": "0.6",
            }
        ]
    }


def test_status_tells_how_an_asked_for_job_ended_but_never_anothers(
    first_dev, stranger, volunteer, browser_client
):
    finished = deploy(first_dev, slices=1, offer="0.1")
    compute(finished, volunteer, 1)
    theirs = deploy(stranger)
    response = browser_client.get(
        "/portal/jobs/status.json", {"job": [finished.id, theirs.id, "nonsense"]}
    )
    assert response.json()["jobs"] == [
        {
            "id": finished.id,
            "status": "finished",
            "total": 1,
            "computed": 1,
            "paid": "0.1",
            "escrow": "0",
        }
    ]
