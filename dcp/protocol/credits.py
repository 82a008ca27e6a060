"""Credits on the wire and in the ledger: exact decimals with at most nine places.

The ledger counts integer base units (10**-9 credit); people and frames carry decimal text
("9.75"). These are the only conversions between the two, used by the bank, the scheduler and
the client alike (worker_static/protocol.js carries the same numbers for the browser).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation, localcontext

CREDIT_DECIMALS = 9
UNITS_PER_CREDIT = 10**CREDIT_DECIMALS
MAX_CREDITS = Decimal(10**9)
# A number as people and JSON write it: Decimal() also reads "1_0" as 10, which nobody means.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class AmountError(ValueError):
    """An amount of credits that is not a finite number with at most nine decimals."""


def parse_credits(credits: str | int | float | Decimal) -> Decimal:
    """A decimal number of credits, exact: finite, at most nine decimals, within the ledger."""
    if isinstance(credits, bool):
        raise AmountError(f"{credits!r} is not a number of credits")
    text = str(credits).strip()
    if not _special(text):  # NaN and infinities get their own message below
        written_as_number(credits)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise AmountError(f"{credits!r} is not a number of credits") from None
    if not value.is_finite():
        raise AmountError(f"{credits!r} is not a number of credits: amounts are finite")
    if value > MAX_CREDITS or value < -MAX_CREDITS:
        raise AmountError(f"{credits} credits is more than the ledger holds")
    if decimal_places(value) > CREDIT_DECIMALS:
        raise AmountError(
            f"{credits} has more than {CREDIT_DECIMALS} decimals "
            "(credits have nine decimal places at most)"
        )
    return value


def _special(text: str) -> bool:
    """NaN and infinities, refused further on with their own message."""
    return text.lstrip("+-").lower() in ("nan", "snan", "inf", "infinity")


def written_as_number(value: object) -> object:
    """Refuse a string that is not a plain decimal number ("1_0", "1 0", "0x10"), leaving the
    rest to the caller's own checks: pydantic's Decimal, like Python's, reads "1_0" as 10."""
    if isinstance(value, str) and not _NUMBER.fullmatch(value.strip()):
        raise AmountError(f"{value!r} is not a number of credits")
    return value


def to_units(credits: str | int | Decimal) -> int:
    """Parse a decimal number of credits ("9.75") into base units, refusing anything inexact."""
    # Nine decimals at most and below 10**9: at most 19 significant digits, so the product is
    # exact in the context's 28.
    return int(parse_credits(credits) * UNITS_PER_CREDIT)


def decimal_places(value: Decimal) -> int:
    """The decimals `value` needs, counted on its digits: arithmetic would round to 28 digits
    first and pass 1.0000000000000000000000000000001 as 1."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # value is finite
    significant = "".join(map(str, digits)).rstrip("0")
    if not significant:
        return 0
    return max(0, -(exponent + len(digits) - len(significant)))


def credits_text(value: Decimal) -> str:
    """A plain decimal string without exponent or trailing zeros: 0.05, 10, 0.000000001."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def format_credits(units: int) -> str:
    """Render base units as a plain decimal number of credits: 10, 9.75, 0.000000001."""
    value = (Decimal(units) / UNITS_PER_CREDIT).quantize(Decimal(1) / UNITS_PER_CREDIT)
    return credits_text(value)


def total_credits(offer: Decimal, count: int) -> str:
    """`offer x count` as credits text, exact: what a cheque for `count` slices authorises."""
    with localcontext(prec=100):  # exact: offer has <= 9 decimals, count is an int
        return credits_text(offer * count)
