"""`dcp.market_value(multiplier, budget=...)`: checked where it is made; the deploy it makes
offers 0 a slice, names the multiplier (covered by the cheque's job hash) and authorises the
budget; `job.cost()` is the budget."""

from __future__ import annotations

from decimal import Decimal

import pytest

import dcp
from dcp.protocol.signed import cheque_text, deploy_hash, recover_signer

from .conftest import ACCOUNT_KEY


def square(x):
    return x * x


@pytest.mark.parametrize(
    ("multiplier", "budget", "problem"),
    [
        (0, "1", "multiplier must be above 0"),
        (101, "1", "at most 100"),
        (1, "0", "budget: a market-value job needs more than 0 credits"),
        (1, "-1", "budget must be a finite number >= 0"),
        (1, "1.0000000001", "budget"),
    ],
)
def test_a_bad_market_value_is_refused_where_it_is_made(multiplier, budget, problem):
    with pytest.raises(dcp.DCPError) as refused:
        dcp.market_value(multiplier, budget=budget)
    assert refused.value.code == "EINVALID" and problem in str(refused.value)


def test_the_deploy_pays_per_cpu_second_from_the_budget_and_the_cheque_covers_it():
    job = dcp.compute_for(1, 10, square)
    offer = dcp.market_value(1.5, budget="2.5")
    assert job.cost(offer) == Decimal("2.5")
    job._state.credentials.market = offer  # what exec() keeps before it builds the frame
    frame = job.deploy_frame(Decimal(0), ACCOUNT_KEY)
    assert frame["market_value"] == {"multiplier": 1.5}
    assert (frame["slice_payment_offer"], frame["payment"]["max_total"]) == ("0", "2.5")
    signed = cheque_text(deploy_hash(frame), frame["payment"]["max_total"])
    assert recover_signer(signed, frame["payment"]["signature"]) == frame["payment"]["account"]
    frame["market_value"] = {"multiplier": 3}  # a changed multiplier breaks the cheque
    changed = cheque_text(deploy_hash(frame), frame["payment"]["max_total"])
    assert recover_signer(changed, frame["payment"]["signature"]) != frame["payment"]["account"]
