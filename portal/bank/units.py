"""Credits as exact integers: the ledger counts base units, people read decimal credits."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

UNITS_PER_CREDIT = 10**9
MAX_CREDITS = Decimal(10**9)


class AmountError(ValueError):
    """An amount of credits that is not a positive number with at most nine decimals."""


def to_units(credits: str | int | Decimal) -> int:
    """Parse a decimal number of credits ("9.75") into base units, refusing anything inexact."""
    try:
        value = Decimal(str(credits).strip())
    except InvalidOperation:
        raise AmountError(f"{credits!r} is not a number of credits") from None
    if not value.is_finite():
        raise AmountError(f"{credits!r} is not a number of credits")
    if value > MAX_CREDITS or value < -MAX_CREDITS:
        raise AmountError(f"{credits} credits is more than the ledger holds")
    if _decimal_places(value) > 9:
        raise AmountError(f"{credits} has more than nine decimal places")
    # Nine decimals at most and below 10**9: at most 19 significant digits, so the product is
    # exact in the context's 28.
    return int(value * UNITS_PER_CREDIT)


def _decimal_places(value: Decimal) -> int:
    """The decimals `value` needs, counted on its digits: arithmetic would round to 28 digits
    first and pass 1.0000000000000000000000000000001 as 1."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # value is finite
    significant = "".join(map(str, digits)).rstrip("0")
    if not significant:
        return 0
    return max(0, -(exponent + len(digits) - len(significant)))


def format_credits(units: int) -> str:
    """Render base units as a plain decimal number of credits: 10, 9.75, 0.000000001."""
    value = (Decimal(units) / UNITS_PER_CREDIT).quantize(Decimal(1) / UNITS_PER_CREDIT)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
