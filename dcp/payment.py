"""The signed texts of the protocol: the session challenge and the payment cheque.

A cheque lets the scheduler move `offer x slices` credits from the account into the job's
escrow. It signs the job hash, the hex SHA-256 of the canonical JSON (sorted keys, no spaces)
of `{ref, work, args, input, slice_payment_offer}`, and the most the job may cost.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from .errors import DCPError
from .keys import sign_text

__all__ = [
    "batch_cheque_text",
    "batch_payment",
    "canonical_json",
    "cheque_text",
    "credits_text",
    "job_hash",
    "parse_offer",
    "payment",
    "session_text",
]

CREDIT_DECIMALS = 9  # the ledger counts base units of 10**-9 credit


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the form both sides hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def job_hash(
    *, ref: str, work: dict[str, str], args: list[Any], input: dict[str, Any], offer: str
) -> str:
    """Hex SHA-256 of the canonical JSON of what the cheque pays for."""
    job = {"ref": ref, "work": work, "args": args, "input": input, "slice_payment_offer": offer}
    return hashlib.sha256(canonical_json(job).encode("utf-8")).hexdigest()


def session_text(nonce: str) -> str:
    """The text an identity key signs to answer the scheduler's challenge."""
    return f"DCP Portal client session\nnonce: {nonce}"


def cheque_text(job_hash_hex: str, max_total: str) -> str:
    """The text an account key signs to authorise paying for a job."""
    return f"DCP Portal payment\njob: {job_hash_hex}\nmax total: {max_total}"


def batch_cheque_text(job_id: str, batch_ref: str, max_total: str) -> str:
    """The text an account key signs to pay for one batch of slices added to an open job."""
    return f"DCP Portal payment\njob: {job_id}\nbatch: {batch_ref}\nmax total: {max_total}"


def parse_offer(offer: str | Decimal | int | float) -> Decimal:
    """A slice payment offer as an exact Decimal: finite, not negative, at most 9 decimals."""
    if isinstance(offer, bool):
        raise DCPError("EINVALID", "slice_payment_offer must be a number of credits")
    try:
        value = Decimal(str(offer).strip())
    except InvalidOperation:
        raise DCPError("EINVALID", f"slice_payment_offer {offer!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise DCPError("EINVALID", f"slice_payment_offer must be a finite number >= 0, not {offer}")
    if _decimal_places(value) > CREDIT_DECIMALS:
        raise DCPError(
            "EINVALID", f"slice_payment_offer {offer} has more than {CREDIT_DECIMALS} decimals"
        )
    return value


def _decimal_places(value: Decimal) -> int:
    """Decimals `value` needs, counted on its digits (arithmetic would round first)."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # value is finite
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    if trailing_zeros == len(digits):
        return 0
    return max(0, -(exponent + trailing_zeros))


def credits_text(value: Decimal) -> str:
    """A plain decimal string without exponent or trailing zeros: 0.05, 10, 0.000000001."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def payment(
    *, account_key: bytes, account: str, job_hash_hex: str, offer: Decimal, total: int
) -> dict[str, str]:
    """The deploy's `payment` object: account, max_total = offer x total, and the cheque."""
    max_total = _max_total(offer, total)
    signature = sign_text(account_key, cheque_text(job_hash_hex, max_total))
    return {"account": account, "max_total": max_total, "signature": signature}


def batch_payment(
    *, account_key: bytes, job_id: str, batch_ref: str, offer: Decimal, count: int
) -> dict[str, str]:
    """An `add_slices` request's `payment`: max_total = offer x count, and the batch cheque."""
    max_total = _max_total(offer, count)
    signature = sign_text(account_key, batch_cheque_text(job_id, batch_ref, max_total))
    return {"max_total": max_total, "signature": signature}


def _max_total(offer: Decimal, count: int) -> str:
    with localcontext(prec=100):  # exact: offer has <= 9 decimals, count is an int
        return credits_text(offer * count)
