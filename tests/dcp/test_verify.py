"""`verify=dcp.Quorum(...)`: checked where it is set, carried and paid for in the deploy and
every batch cheque, voted on by local_exec as the scheduler votes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

import dcp
from dcp.protocol.signed import deploy_hash

from .conftest import ACCOUNT_KEY, IDENTITY_KEY

KEYS: dict[str, Any] = {"identity": "0x" + IDENTITY_KEY.hex(), "account": ACCOUNT_KEY}


def square(x):
    return x * x


def coin(x):
    import random

    return random.random()


@pytest.mark.parametrize(
    ("verify", "problem"),
    [
        (dict(quorum=1), "verify: quorum: Input should be greater than or equal to 2"),
        (dict(quorum=6), "verify: quorum: Input should be less than or equal to 5"),
        (dict(quorum=3, max_results=2), "max_results (2) must be at least the quorum (3)"),
        (dict(quorum=2, tolerance=-0.1), "verify: tolerance: Input should be greater than"),
        (dict(quorum="2"), "verify: quorum: Input should be a valid integer"),
    ],
)
def test_a_bad_verification_is_refused_where_it_is_set(verify, problem):
    with pytest.raises(dcp.DCPError) as refused:
        dcp.Quorum(**verify)
    assert refused.value.code == "EINVALID" and problem in str(refused.value)
    with pytest.raises(dcp.DCPError, match="verify"):
        dcp.compute_for([1], square, verify=verify)


def test_verify_takes_a_quorum_or_its_fields_and_nothing_else():
    job = dcp.compute_for([1], square, verify={"quorum": 3, "tolerance": 1e-9})
    assert job.verify == dcp.Quorum(3, tolerance=1e-9, max_results=5)
    job.verify = None
    assert job.verify is None
    with pytest.raises(dcp.DCPError, match=r"verify must be dcp.Quorum\(...\)"):
        job.verify = 2


def test_the_deploy_carries_verify_and_its_cheque_covers_every_result():
    job = dcp.compute_for(1, 10, square, verify=dcp.Quorum(3))
    frame = job.deploy_frame(Decimal("0.01"), ACCOUNT_KEY)
    assert frame["verify"]["quorum"] == 3 and frame["verify"]["max_results"] == 5
    assert frame["payment"]["max_total"] == "0.3"  # 10 slices x 3 results x 0.01
    # The job hash covers verify: a scheduler that dropped it would not match the cheque.
    assert deploy_hash(frame) != deploy_hash({k: v for k, v in frame.items() if k != "verify"})
    plain = dcp.compute_for(1, 10, square).deploy_frame(Decimal("0.01"), ACCOUNT_KEY)
    assert "verify" not in plain and plain["payment"]["max_total"] == "0.1"


def test_an_open_verified_job_pays_each_added_batch_for_its_quorum(scheduler):
    job = dcp.compute_for([1, 2], square, auto_close=False, verify=dcp.Quorum(2))
    statuses: list[dict[str, Any]] = []
    job.on("status", statuses.append)
    job.add_slices([3, 4, 5])  # sent after the deploy, with their own cheque
    job.close()
    results = job.exec(slice_payment_offer="0.01", **KEYS)
    assert list(results) == [2, 4, 6, 8, 10]  # the fake scheduler doubles
    (batch,) = scheduler.requests("add_slices")
    assert batch["payment"]["max_total"] == "0.06"  # the scheduler checks it covers 3 x 2
    assert statuses[-1]["verification"]["quorum"] == 2


def test_local_exec_votes_like_the_scheduler():
    job = dcp.compute_for(range(5), square, verify=dcp.Quorum(2))
    duplicates: list[dict[str, Any]] = []
    job.on("duplicate-result", duplicates.append)
    assert list(job.local_exec(cores=1)) == [0, 1, 4, 9, 16]
    assert len(duplicates) == 5 and all(d["accepted"] and d["agreeing"] == 2 for d in duplicates)

    random_job = dcp.compute_for(range(3), coin, verify=dcp.Quorum(2, max_results=3))
    errors: list[dict[str, Any]] = []
    random_job.on("error", errors.append)
    with pytest.raises(dcp.DCPError) as failed:
        random_job.local_exec(cores=2)
    assert failed.value.code == "ENOQUORUM" and "did not agree" in str(failed.value)
    assert errors[-1]["name"] == "NoQuorum"


def test_the_cost_before_exec_counts_every_verifying_result():
    job = dcp.compute_for(1, 10, square)
    assert job.cost("0.01") == Decimal("0.1")
    job.verify = dcp.Quorum(3)
    assert job.cost("0.01") == Decimal("0.3")
