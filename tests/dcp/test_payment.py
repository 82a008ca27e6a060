"""The deploy frame's cheque: job hash, max_total = offer x slices, the account's signature."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

import dcp
from dcp.client.cheques import parse_offer
from dcp.client.remote import add_slices_frame
from dcp.protocol.credits import credits_text
from dcp.protocol.signed import batch_cheque_text, canonical_json

from .conftest import ACCOUNT, ACCOUNT_KEY

pytestmark: list[pytest.MarkDecorator] = []


def work(x):
    return x * 2


def received(frame: dict) -> dict:
    """The frame as the scheduler parses it off the wire."""
    return json.loads(json.dumps(frame))


def cheque_signer(frame: dict) -> str:
    fields = ("ref", "work", "args", "input", "slice_payment_offer")
    canonical = json.dumps({k: frame[k] for k in fields}, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    text = f"DCP Portal payment\njob: {digest}\nmax total: {frame['payment']['max_total']}"
    message = encode_defunct(text=text)
    return Account.recover_message(message, signature=frame["payment"]["signature"])


def test_the_cheque_recovers_to_the_account_over_the_job_hash():
    job = dcp.compute_for(1, 50, work, args=[{"b": 1, "a": [1.5, "é"]}])
    job.public = {"name": "doubling"}
    frame = received(job.deploy_frame(Decimal("0.001"), ACCOUNT_KEY))
    assert cheque_signer(frame) == ACCOUNT == frame["payment"]["account"]
    assert frame["payment"]["max_total"] == "0.05"
    assert frame["slice_payment_offer"] == "0.001"
    assert frame["ref"] == job.ref
    assert frame["public"] == {"name": "doubling"}
    assert frame["work"] == {"language": "python", "source": "def work(x):\n    return x * 2\n"}


def test_values_with_odd_keys_hash_the_same_on_both_sides():
    job = dcp.compute_for([{2: "a", 10: "b"}, (1, 2), "ü"], work)
    frame = received(job.deploy_frame(Decimal("0.5"), ACCOUNT_KEY))
    assert cheque_signer(frame) == ACCOUNT
    assert frame["payment"]["max_total"] == "1.5"


def test_a_tampered_job_no_longer_matches_the_cheque():
    frame = received(dcp.compute_for([1, 2], work).deploy_frame(Decimal("1"), ACCOUNT_KEY))
    frame["input"]["values"].append(3)
    assert cheque_signer(frame) != ACCOUNT


def test_the_job_hash_uses_canonical_json():
    assert canonical_json({"b": [1, 2], "a": "x"}) == '{"a":"x","b":[1,2]}'


@pytest.mark.parametrize(
    ("offer", "slices", "max_total"),
    [
        ("0.001", 10, "0.01"),
        (0.1, 3, "0.3"),  # a float offer is read through str(), never as a binary fraction
        (Decimal("0.000000001"), 7, "0.000000007"),
        (2, 1_000_000, "2000000"),
        ("0", 5, "0"),
        ("123456789.123456789", 10_000_000, "1234567891234567.89"),
    ],
)
def test_max_total_is_offer_times_slices_exactly(offer, slices, max_total):
    job = dcp.compute_for(1, slices, work)
    frame = job.deploy_frame(parse_offer(offer), ACCOUNT_KEY)
    assert frame["payment"]["max_total"] == max_total


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        ("-1", ">= 0"),
        ("nan", "finite"),
        ("lots", "not a number"),
        ("0.0000000001", "more than 9 decimals"),
        (True, "number of credits"),
    ],
)
def test_bad_offers_are_refused(offer, message):
    with pytest.raises(dcp.DCPError, match=message):
        parse_offer(offer)


def test_credits_are_written_plainly():
    assert credits_text(Decimal("1E-7")) == "0.0000001"
    assert credits_text(Decimal("5E+1")) == "50"
    assert credits_text(Decimal("0.0500")) == "0.05"


def test_a_value_over_the_frame_limit_is_refused_before_sending():
    job = dcp.compute_for(["x" * (5 * 2**20)], work)
    with pytest.raises(dcp.DCPError, match="frame limit: use a range"):
        job.deploy_frame(Decimal("0.001"), ACCOUNT_KEY)


def test_a_large_list_deploys_an_open_job_with_its_first_batch():
    job = dcp.compute_for(["x" * 1000] * 5000, work)
    frame = received(job.deploy_frame(Decimal("0.001"), ACCOUNT_KEY))
    assert frame["open"] is True
    assert len(frame["input"]["values"]) == 1000
    assert frame["payment"]["max_total"] == "1"
    assert cheque_signer(frame) == ACCOUNT


def test_a_batch_cheque_signs_job_id_batch_ref_and_max_total():
    frame = received(
        add_slices_frame("job-7", [1, 2, 3], offer=Decimal("0.25"), account_key=ACCOUNT_KEY)
    )
    assert frame["payment"]["max_total"] == "0.75"
    text = batch_cheque_text("job-7", frame["ref"], "0.75")
    assert text == f"DCP Portal payment\njob: job-7\nbatch: {frame['ref']}\nmax total: 0.75"
    signer = Account.recover_message(
        encode_defunct(text=text), signature=frame["payment"]["signature"]
    )
    assert signer == ACCOUNT
