"""Payment cheques of the client socket: who signed them, and whether they cover the slices.

A cheque is an account key's signature over a text of dcp.protocol.signed; the amounts are
quoted exactly as the client sent them, so the text is read off the frame, not the model.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from dcp.protocol.messages import AddSlices, Deploy, Escrow
from dcp.protocol.signed import batch_cheque_text, cheque_text, deploy_hash, recover_signer

from .errors import SchedulerError


def deploy_payer(request: Deploy, frame: dict[str, Any]) -> str:
    """The paying account of a deploy, which must have signed its cheque."""
    text = cheque_text(deploy_hash(frame), str(frame["payment"]["max_total"]))
    signer = recover_signer(text, request.payment.signature)
    if signer is None or signer.lower() != request.payment.account.lower():
        raise SchedulerError(
            "EBADPAYMENT", "the payment authorisation is not signed by the paying account"
        )
    return signer


def batch_payer(request: AddSlices | Escrow, frame: dict[str, Any]) -> str:
    """The account that signed the cheque of a batch of added slices (or of an escrow)."""
    text = batch_cheque_text(request.job, request.ref, str(frame["payment"]["max_total"]))
    payer = recover_signer(text, request.payment.signature)
    if payer is None:
        raise SchedulerError("EBADPAYMENT", "the batch's payment authorisation does not verify")
    return payer


def require_covered(max_total: Decimal, offer: Decimal, slices: int, replicas: int = 1) -> None:
    """Refuse a cheque for less than `offer x slices` (x `replicas`, the results a verified job
    pays for each slice)."""
    cost = offer * slices * replicas
    if max_total < cost:
        each = f" x {replicas} results each (verification)" if replicas > 1 else ""
        raise SchedulerError(
            "EBADPAYMENT",
            f"the payment authorises {max_total} credits but {slices} slices{each} at {offer} "
            f"cost {cost}",
        )
