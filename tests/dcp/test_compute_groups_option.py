"""The compute_groups option: checked before anything is sent, carried by the deploy frame
(outside the job hash the cheque signs), ignored by local_exec."""

from __future__ import annotations

from decimal import Decimal

import pytest

import dcp

from .conftest import ACCOUNT_KEY, KEYS

LAB = {"joinKey": "lab-machines-1a2b3c4d", "joinSecret": "s3cret-of-the-lab"}


def work(x):
    return x * 2


def test_the_deploy_frame_carries_the_compute_groups_given_to_compute_for(scheduler):
    job = dcp.compute_for(1, 3, work, compute_groups=[LAB])

    job.exec(**KEYS)

    assert scheduler.requests("deploy")[0]["compute_groups"] == [LAB]


def test_compute_groups_set_on_the_job_travel_too_and_none_sends_nothing():
    grouped = dcp.compute_for([1], work)
    grouped.compute_groups = [LAB, {"joinKey": "home", "joinSecret": "x"}]
    public = dcp.compute_for([1], work)

    frame = grouped.deploy_frame(Decimal("0.01"), ACCOUNT_KEY)

    assert [g["joinKey"] for g in frame["compute_groups"]] == ["lab-machines-1a2b3c4d", "home"]
    assert "compute_groups" not in public.deploy_frame(Decimal("0.01"), ACCOUNT_KEY)


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (LAB, "compute_groups must be a list such as"),
        ([("lab", "secret")], "compute_groups[0] must be a dict"),
        ([{"joinKey": "lab"}], "compute_groups[0].joinSecret: Field required"),
        ([LAB, {"joinKey": "lab", "joinSecret": 7}], "compute_groups[1].joinSecret:"),
        ([{**LAB, "name": "x"}], "compute_groups[0].name: Extra inputs are not permitted"),
        ([{"joinKey": "no spaces", "joinSecret": "x"}], "compute_groups[0].joinKey:"),
        ([LAB] * 17, "compute_groups lists 17 groups: at most 16"),
    ],
)
def test_a_badly_shaped_compute_group_is_refused_before_anything_is_sent(
    scheduler, groups, message
):
    with pytest.raises(dcp.DCPError) as caught:
        dcp.compute_for(1, 3, work, compute_groups=groups)

    assert caught.value.code == "EINVALID"
    assert message in str(caught.value)
    assert scheduler.requests("hello") == scheduler.requests("deploy") == []


def test_a_compute_group_changed_in_place_is_checked_again_at_exec(scheduler):
    job = dcp.compute_for(1, 3, work, compute_groups=[dict(LAB)])
    del job.compute_groups[0]["joinSecret"]

    with pytest.raises(dcp.DCPError, match=r"compute_groups\[0\]\.joinSecret"):
        job.exec(**KEYS)

    assert scheduler.requests("deploy") == []


def test_local_exec_ignores_the_compute_groups():
    job = dcp.compute_for(1, 3, work, compute_groups=[LAB])

    assert list(job.local_exec(progress_bar=False)) == [2, 4, 6]
