"""Bad input is a 4xx in the error shape, never a 500: bodies, methods, paths, sizes."""

from __future__ import annotations

import json

import pytest

from portal.scheduler.models import Job

from .conftest import error_of

WORK = {"language": "python", "function": "def work(x):\n    return x\n"}


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "[1, 2]",
        '"a string"',
        "null",
        '{"work": {"function": "f"}, "slices": [NaN]}',
        '{"work": {"function": "f"}, "slices": [Infinity]}',
        '{"work": {"function": "f"}, "slices": [1e400]}',
        '{"work": {"function": "f\\u0000"}}',
        '{"work": {"function": "f"}, "slices": ["\\ud800"]}',
        '{"work": {"function": "f"}, "public": {"name\\u0000": 1}}',
        '{"work": {"function": "f"}, "slices": [' + "[" * 100 + "]" * 100 + "]}",
        '{"work": {"function": "f"}, "slices": [' + "[" * 5000 + "]" * 5000 + "]}",
        b'{"work": {"function": "\xff\xfe"}}',
        json.dumps({"work": WORK, "unexpected": 1}),
        json.dumps({"work": {**WORK, "language": "ruby"}}),
        json.dumps({"work": {"language": "js"}}),
        json.dumps({"work": {**WORK, "function": ""}}),
        json.dumps({"work": WORK, "slices": "1,2,3"}),
        json.dumps({"work": WORK, "slicePaymentOffer": -1}),
        json.dumps({"work": WORK, "slicePaymentOffer": "cheap"}),
        json.dumps({"work": WORK, "slicePaymentOffer": 0.0000000001}),
        json.dumps({"work": WORK, "slicePaymentOffer": 1e300}),
        json.dumps({"work": WORK, "slicePaymentOffer": "99999999999.999999999"}),
        json.dumps({"work": WORK, "slicePaymentOffer": "1_0"}),
        json.dumps({"work": WORK, "account": {"address": "0xnot-an-address"}}),
        json.dumps({"work": WORK, "account": {"address": "0x" + "a" * 40, "passphrase": "x"}}),
        json.dumps({"work": WORK, "public": {"link": "javascript:alert(1)"}}),
        json.dumps({"work": WORK, "requirements": {"environment": {"webgpu": "yes please"}}}),
        '{"work": {}, "x": 1',
    ],
)
def test_a_malformed_deploy_body_is_400_and_deploys_nothing(bearer, body):
    response = bearer.post("/api/v0/job", body)
    assert response.status_code == 400, response.content
    assert error_of(response)["code"] == "EINVALID"
    assert Job.objects.count() == 0


def test_a_huge_integer_is_400(bearer):
    response = bearer.post(
        "/api/v0/job", '{"work": {"function": "f"}, "slices": [' + "9" * 5000 + "]}"
    )
    assert response.status_code == 400


def test_an_empty_body_is_400(bearer):
    response = bearer.post("/api/v0/job", "")
    assert response.status_code == 400
    assert "body" in error_of(response)["message"]


def test_the_message_names_the_bad_field(bearer):
    response = bearer.post("/api/v0/job", {"work": {"language": "js"}})
    assert error_of(response)["message"] == "body.work.function: Field required"


def test_a_body_over_the_size_limit_is_413(bearer, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = bearer.post("/api/v0/job", {"work": WORK, "slices": ["x" * 2000]})
    assert response.status_code == 413
    assert error_of(response)["code"] == "ETOOLARGE"


def test_a_bad_idempotency_key_is_400(bearer):
    response = bearer.post("/api/v0/job", {"work": WORK}, **{"Idempotency-Key": "short"})
    assert response.status_code == 400
    assert Job.objects.count() == 0


def test_a_wrong_method_is_405_in_the_error_shape(bearer):
    response = bearer.request("PUT", "/api/v0/job", {"work": WORK})
    assert response.status_code == 405
    assert error_of(response)["code"] == "EMETHOD"
    assert response["Allow"] == "POST"


def test_an_unknown_path_under_the_api_is_404_in_the_error_shape(bearer):
    for path in ("/api/v0/nothing", "/api/v0/", "/api/v0/job/x/y/z", "/api/v0/jobs/x"):
        response = bearer.get(path)
        assert response.status_code == 404, path
        assert error_of(response)["code"] == "ENOTFOUND"


def test_a_cancel_with_a_malformed_body_is_400(bearer):
    job_id = bearer.post("/api/v0/job", {"work": WORK}).json()["jobId"]
    response = bearer.delete(f"/api/v0/job/{job_id}", {"reason": 5})
    assert response.status_code == 400
    assert Job.objects.get(pk=job_id).status == "running"


def test_a_post_to_an_unknown_api_path_is_a_json_404_not_a_csrf_page(db):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post("/api/v0/job//close")
    assert response.status_code == 404
    assert error_of(response)["code"] == "ENOTFOUND"
