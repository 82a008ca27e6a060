"""Job options: requirements, public description and progress timeout, checked before deploy."""

from __future__ import annotations

import pytest

import dcp

from .conftest import KEYS

pytestmark: list[pytest.MarkDecorator] = []


def work(x):
    return x


def test_requirements_public_and_progress_timeout_travel_in_the_deploy(scheduler):
    job = dcp.compute_for(
        1, 3, work, requirements={"environment": {"webgpu": True}}, progress_timeout=2.5
    )
    job.public = {"name": "doubling", "description": "twice", "link": "https://example.com/x"}
    job.requirements["discrete"] = True
    job.exec(**KEYS)
    deploy = scheduler.requests("deploy")[0]
    assert deploy["requirements"] == {"environment": {"webgpu": True}, "discrete": True}
    assert deploy["public"] == {
        "name": "doubling",
        "description": "twice",
        "link": "https://example.com/x",
    }
    assert deploy["progress_timeout"] == 3  # whole seconds on the wire, rounded up


@pytest.mark.parametrize(
    ("requirements", "message"),
    [
        ({"gpu": True}, "requirements.gpu is not a known requirement"),
        ({"environment": {"webgl": True}}, "requirements.environment.webgl is not a known"),
        ({"environment": {"webgpu": "yes"}}, "requirements.environment.webgpu must be True"),
        ({"environment": []}, "requirements.environment must be a dict"),
        ([1], "requirements must be a dict"),
    ],
)
def test_a_requirement_the_scheduler_does_not_know_is_refused_naming_it(requirements, message):
    with pytest.raises(dcp.DCPError, match=message) as caught:
        dcp.compute_for(1, 3, work).requirements = requirements
    assert caught.value.code == "EINVALID"


def test_requirements_changed_after_setting_are_checked_again_before_deploy(scheduler):
    job = dcp.compute_for(1, 3, work, requirements={})
    job.requirements["environment"] = {"cuda": True}
    with pytest.raises(dcp.DCPError, match=r"requirements\.environment\.cuda"):
        job.exec(**KEYS)
    assert scheduler.requests("deploy") == []


@pytest.mark.parametrize(
    ("public", "message"),
    [
        ({"title": "x"}, "job.public.title is unknown"),
        ({"name": "x" * 201}, "longer than 200"),
        ({"link": "ftp://example.com"}, "http"),
        ({"name": 5}, "dict of strings"),
    ],
)
def test_a_bad_public_description_is_refused(public, message):
    with pytest.raises(dcp.DCPError, match=message):
        dcp.compute_for(1, 3, work, public=public)


@pytest.mark.parametrize("seconds", [0, -1, float("inf"), "60", True, 10**6])
def test_a_bad_progress_timeout_is_refused(seconds):
    with pytest.raises(dcp.DCPError, match="progress_timeout"):
        dcp.compute_for(1, 3, work, progress_timeout=seconds)
