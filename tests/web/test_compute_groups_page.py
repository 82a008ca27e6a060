"""The Compute groups page over HTTP: create a group (its secret shown once, kept as a digest),
rotate the secret, take a job out of a group; another user's group is 404."""

from __future__ import annotations

import hashlib
import re
import uuid

import pytest
from django.test import Client
from eth_account import Account

from dcp.protocol.credits import to_units
from portal.bank.selectors import balance_of
from portal.scheduler.errors import SchedulerError
from portal.scheduler.groups import create_group
from portal.scheduler.models import ComputeGroup, Job, JobStatus
from portal.scheduler.selectors import groups_for
from portal.scheduler.services import Capabilities, JobSpec, claim_slices, deploy_job
from portal.wallet.models import Key
from tests.web.test_pages import csrf_post, messages_of

PAGE = "/portal/compute-groups/"


@pytest.fixture
def browser_client(first_dev) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(first_dev)
    return client


def payer(user) -> str:
    return Key.objects.get(user=user, is_default=True).address


def deploy_into(owner, *credentials: tuple[str, str], name: str = "grouped") -> Job:
    spec = JobSpec(
        ref=uuid.uuid4().hex,
        language="python",
        source="def work(x):\n    return x\n",
        args=[],
        input_kind="range",
        input_spec={"start": 1, "end": 4, "step": 1},
        offer=to_units("0.1"),
        public={"name": name},
        compute_groups=list(credentials),
    )
    job, _ = deploy_job(
        owner=owner, identity=Account.create().address, payer=payer(owner), spec=spec
    )
    return job


def secret_on(html: str) -> str:
    return re.search(r'data-testid="join-secret">([^<]+)<', html).group(1)


def test_the_page_needs_a_signed_in_user_and_is_in_the_tabs(client, browser_client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")

    html = browser_client.get(PAGE).content.decode()
    assert 'aria-current="page">Compute groups</a>' in html
    assert "No compute group yet." in html


def test_a_new_group_shows_its_join_secret_once_and_stores_only_its_digest(
    first_dev, browser_client
):
    response = csrf_post(browser_client, PAGE, f"{PAGE}new/", {"name": "Lab machines"})

    html = response.content.decode()
    secret = secret_on(html)
    group = ComputeGroup.objects.get(owner=first_dev)
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    assert messages_of(response) == ["Compute group Lab machines created."]
    assert group.name == "Lab machines" and group.join_key.startswith("lab-machines-")
    assert group.join_key in html and len(secret) >= 32
    assert group.join_secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(list(ComputeGroup.objects.values_list()))
    assert groups_for([(group.join_key, secret)]) == [group]
    assert secret not in browser_client.get(PAGE).content.decode()  # shown only that once


def test_a_new_join_secret_replaces_the_old_one(first_dev, browser_client):
    group, old = create_group(owner=first_dev, name="lab")

    response = csrf_post(browser_client, PAGE, f"{PAGE}{group.join_key}/rotate/", {})

    new = secret_on(response.content.decode())
    assert response["Cache-Control"] == "no-store" and new != old
    assert groups_for([(group.join_key, new)]) == [group]
    with pytest.raises(SchedulerError, match="unknown group or wrong join secret"):
        groups_for([(group.join_key, old)])


def test_the_page_lists_each_groups_jobs_whoever_deployed_them(first_dev, stranger, browser_client):
    group, secret = create_group(owner=first_dev, name="lab")
    theirs = deploy_into(stranger, (group.join_key, secret), name="eve's job in my group")
    public = deploy_into(first_dev, name="public job")

    html = browser_client.get(PAGE).content.decode()

    assert re.findall(r'data-testid="compute-group-job" data-job-id="(\w+)"', html) == [theirs.id]
    assert "eve&#x27;s job in my group" in html and public.id not in html


def test_removing_a_job_from_one_of_its_groups_keeps_it_from_that_groups_workers(
    first_dev, browser_client
):
    lab, lab_secret = create_group(owner=first_dev, name="lab")
    home, home_secret = create_group(owner=first_dev, name="home")
    job = deploy_into(first_dev, (lab.join_key, lab_secret), (home.join_key, home_secret))

    response = csrf_post(browser_client, PAGE, f"{PAGE}{lab.join_key}/jobs/{job.id}/remove/", {})

    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert list(job.compute_groups.all()) == [home]
    lab_worker = Capabilities(compute_groups=frozenset({lab.pk}))
    home_worker = Capabilities(compute_groups=frozenset({home.pk}), public_group=False)
    assert claim_slices(worker="w-lab", limit=4, capabilities=lab_worker) is None
    assert claim_slices(worker="w-home", limit=4, capabilities=home_worker).job.id == job.id


def test_removing_a_job_from_its_last_group_cancels_it_and_refunds_rather_than_making_it_public(
    first_dev, browser_client
):
    group, secret = create_group(owner=first_dev, name="lab")
    before = balance_of(payer(first_dev))
    job = deploy_into(first_dev, (group.join_key, secret))
    assert balance_of(payer(first_dev)) == before - to_units("0.4")

    url = f"{PAGE}{group.join_key}/jobs/{job.id}/remove/"
    response = csrf_post(browser_client, PAGE, url, {})
    page = browser_client.get(PAGE)  # where the redirect leads: the message shows there

    job.refresh_from_db()
    assert response.status_code == 302
    assert job.status == JobStatus.CANCELLED and job.cancel_code == "ECANCELLED"
    assert "taken out of compute group lab" in job.cancel_reason
    assert balance_of(payer(first_dev)) == before
    assert claim_slices(worker="w-public", limit=4, capabilities=Capabilities()) is None
    assert messages_of(page) == [
        "Job grouped removed from lab. It was in no other group, so it is cancelled."
    ]


def test_another_users_group_cannot_be_seen_or_changed(first_dev, stranger, browser_client):
    group, secret = create_group(owner=stranger, name="eve's lab")
    job = deploy_into(stranger, (group.join_key, secret))
    digest = group.join_secret_hash

    html = browser_client.get(PAGE).content.decode()
    rotate = csrf_post(browser_client, PAGE, f"{PAGE}{group.join_key}/rotate/", {})
    remove = csrf_post(browser_client, PAGE, f"{PAGE}{group.join_key}/jobs/{job.id}/remove/", {})

    assert group.join_key not in html and job.id not in html
    assert rotate.status_code == remove.status_code == 404
    group.refresh_from_db()
    assert group.join_secret_hash == digest
    assert list(job.compute_groups.all()) == [group]


def test_a_job_of_another_group_cannot_be_removed_through_ones_own(
    first_dev, stranger, browser_client
):
    own, _ = create_group(owner=first_dev, name="mine")
    theirs, secret = create_group(owner=stranger, name="theirs")
    job = deploy_into(stranger, (theirs.join_key, secret))

    response = csrf_post(browser_client, PAGE, f"{PAGE}{own.join_key}/jobs/{job.id}/remove/", {})

    assert response.status_code == 404
    assert list(job.compute_groups.all()) == [theirs]
