"""Cheques: what the account key signs to pay for a job and for each batch added to it.

The texts, the job hash and the credit arithmetic are the protocol's (`dcp.protocol.signed`,
`dcp.protocol.credits`), so the scheduler verifies exactly what is signed here; this module only
reads the offer a person gives and signs with the account key.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..errors import DCPError
from ..protocol.credits import AmountError, parse_credits, total_credits
from ..protocol.signed import batch_cheque_text, cheque_text, deploy_hash, sign_text

__all__ = ["batch_payment", "parse_offer", "sign_deploy", "total_credits"]

Frame = dict[str, Any]


def parse_offer(offer: str | Decimal | int | float) -> Decimal:
    """A slice payment offer as an exact Decimal: the protocol's credit rules, and not negative."""
    try:
        value = parse_credits(offer)
    except AmountError as error:
        raise DCPError("EINVALID", f"slice_payment_offer {error}") from None
    if value < 0:
        raise DCPError("EINVALID", f"slice_payment_offer must be a finite number >= 0, not {offer}")
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
