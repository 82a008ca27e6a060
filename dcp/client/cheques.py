"""Cheques: what the account key signs to pay for a job and for each batch added to it.

The texts, the job hash and the credit arithmetic are the protocol's (`dcp.protocol.signed`,
`dcp.protocol.credits`), so the scheduler verifies exactly what is signed here; this module only
reads the offer a person gives and signs with the account key.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..errors import DCPError
from ..protocol.credits import AmountError, parse_credits, total_credits
from ..protocol.messages import MAX_MARKET_MULTIPLIER
from ..protocol.signed import batch_cheque_text, cheque_text, deploy_hash, sign_text

__all__ = [
    "MarketValue",
    "batch_payment",
    "escrow_payment",
    "market_value",
    "parse_offer",
    "sign_deploy",
    "total_credits",
]

Frame = dict[str, Any]


@dataclass(frozen=True)
class MarketValue:
    """A slice payment offer of `market_value()`: pay per measured CPU-second at the market
    price x `multiplier`, spending at most `budget` credits (more with `job.escrow()`)."""

    multiplier: float
    budget: Decimal

    def protocol(self) -> dict[str, float]:
        return {"multiplier": self.multiplier}


def market_value(multiplier: float = 1.0, *, budget: str | Decimal | int | float) -> MarketValue:
    """The offer of a job that pays per measured CPU-second at the portal's market price
    times `multiplier` (DCP's compute.marketValue). Its first slices estimate its cost (the
    `accepted` event carries the estimate); `budget` credits move into its escrow at deploy,
    and when they run out the job pauses (`nofunds` event) until `job.escrow(credits)`."""
    if not 0 < multiplier <= MAX_MARKET_MULTIPLIER:
        raise DCPError(
            "EINVALID", f"multiplier must be above 0 and at most {MAX_MARKET_MULTIPLIER:g}"
        )
    amount = parse_offer(budget, "budget")
    if amount <= 0:
        raise DCPError("EINVALID", "budget: a market-value job needs more than 0 credits")
    return MarketValue(float(multiplier), amount)


def parse_offer(offer: str | Decimal | int | float, name: str = "slice_payment_offer") -> Decimal:
    """A slice payment offer (or another amount, `name`) as an exact Decimal: the protocol's
    credit rules, and not negative."""
    try:
        value = parse_credits(offer)
    except AmountError as error:
        raise DCPError("EINVALID", f"{name} {error}") from None
    if value < 0:
        raise DCPError("EINVALID", f"{name} must be a finite number >= 0, not {offer}")
    return value


def sign_deploy(frame: Frame, account_key: bytes) -> None:
    """Sign the deploy `frame`'s cheque in place, over the job hash of the frame as it is sent."""
    payment = frame["payment"]
    text = cheque_text(deploy_hash(frame), payment["max_total"])
    payment["signature"] = sign_text(account_key, text)


def batch_payment(
    *,
    account_key: bytes,
    job_id: str,
    batch_ref: str,
    offer: Decimal,
    count: int,
    replicas: int = 1,
) -> dict[str, str]:
    """An `add_slices` request's `payment`: max_total = offer x count (x the quorum of a job
    that asked for verification: `replicas`), and the batch cheque."""
    max_total = total_credits(offer, count * replicas)
    signature = sign_text(account_key, batch_cheque_text(job_id, batch_ref, max_total))
    return {"max_total": max_total, "signature": signature}


def escrow_payment(*, account_key: bytes, job_id: str, ref: str, amount: Decimal) -> dict[str, str]:
    """An `escrow` request's `payment`: the batch cheque for `amount` credits."""
    max_total = total_credits(amount, 1)
    signature = sign_text(account_key, batch_cheque_text(job_id, ref, max_total))
    return {"max_total": max_total, "signature": signature}
