"""Every message parses into its model and back to the same frame, in both directions."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dcp.protocol import messages as wire

ADDRESS = "0x" + "ab" * 20
STATUS = {"total": 2, "distributed": 1, "computed": 0, "failed": 0, "status": "running"}

SERVER_TO_CLIENT = [
    {"type": "challenge", "version": 1, "nonce": "00"},
    {"type": "welcome", "id": 1, "identity": ADDRESS, "user": "a@b.c", "first_dev": True},
    {"type": "accepted", "id": 2, "job": "j", "total": 3},
    {"type": "added", "id": 2, "job": "j", "total": 5},
    {"type": "closed", "id": 2, "job": "j", "total": 5},
    {"type": "status", "id": 3, "job": "j", "status": {**STATUS, "open": False}},
    {"type": "jobs", "id": 4, "jobs": [{"job": "j", "name": "n"}]},
    {"type": "results", "id": 5, "job": "j", "results": [[1, 2], [2, {"a": None}]]},
    {"type": "inputs", "id": 6, "job": "j", "start": 3, "values": [3, [4]]},
    {"type": "cancelled", "id": 7, "job": "j"},
    {"type": "event", "job": "j", "event": "result", "data": [{"slice": 1, "value": 2}]},
    {"type": "error", "id": None, "code": "EINVALID", "message": "bad"},
    {
        "type": "subscribed",
        "id": "s",
        "job": "j",
        "status": {**STATUS, "open": True, "waiting": "no connected worker has webgpu"},
        "info": {
            "work": {"language": "js", "source": "x => x"},
            "args": [1],
            "input": {"kind": "values"},
            "slice_payment_offer": "0.5",
            "open": True,
        },
    },
]

SERVER_TO_WORKER = [
    {"type": "welcome", "id": 1, "worker": "w", "address": ADDRESS},
    {"type": "waiting"},
    {
        "type": "task",
        "task": "j:1",
        "job": {"id": "j", "language": "python", "source": "s", "args": []},
        "slices": [{"slice": 1, "datum": 1}, {"slice": 2, "datum": None}],
        "lease_seconds": 90,
        "progress_timeout": 60,
    },
    {"type": "abort", "job": "j"},
    {"type": "ack", "id": "r", "accepted": 2, "earned": "0.02"},
]


@pytest.mark.parametrize("frame", SERVER_TO_CLIENT, ids=lambda f: f["type"])
def test_a_client_reply_round_trips(frame):
    message = wire.client_replies.validate_python(frame)
    assert json.loads(message.model_dump_json()) == frame


@pytest.mark.parametrize("frame", SERVER_TO_WORKER, ids=lambda f: f["type"])
def test_a_worker_reply_round_trips(frame):
    message = wire.worker_replies.validate_python(frame)
    assert json.loads(message.model_dump_json()) == frame


def test_a_status_without_waiting_leaves_the_key_out():
    status = wire.JobStatus(**STATUS)
    assert "waiting" not in json.loads(status.model_dump_json())


def test_requests_parse_into_their_models():
    fetch = wire.client_requests.validate_python(
        {"type": "inputs", "id": 1, "job": "j", "start": 1, "end": 9}
    )
    assert isinstance(fetch, wire.FetchInputs) and fetch.end == 9
    ready = wire.worker_requests.validate_python({"type": "ready", "capacity": 3})
    assert isinstance(ready, wire.Ready)


def test_a_bad_request_is_described_by_its_first_bad_field():
    with pytest.raises(ValidationError) as caught:
        wire.client_requests.validate_python({"type": "results", "id": 1, "job": "j", "start": 0})
    assert wire.describe(caught.value).startswith("results.start:")


def test_an_unknown_key_is_an_error_not_a_default():
    with pytest.raises(ValidationError):
        wire.client_requests.validate_python({"type": "jobs", "id": 1, "jobz": True})


@given(st.decimals(min_value=0, max_value=10**9, places=9, allow_nan=False))
def test_credits_in_a_cheque_are_written_as_plain_decimals(amount):
    payment = wire.BatchPayment(max_total=amount, signature="0x")
    text = json.loads(payment.model_dump_json())["max_total"]
    assert "E" not in text and Decimal(text) == amount
