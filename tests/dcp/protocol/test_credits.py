"""Credits as people write them and base units as the ledger counts them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dcp.protocol.credits import UNITS_PER_CREDIT, AmountError, format_credits, to_units

MOST_UNITS = 10**9 * UNITS_PER_CREDIT


@pytest.mark.parametrize(
    ("credits", "units", "shown"),
    [
        ("10", 10 * UNITS_PER_CREDIT, "10"),
        ("9.75", 9_750_000_000, "9.75"),
        ("0.000000001", 1, "0.000000001"),
        ("0", 0, "0"),
        ("1000000000", MOST_UNITS, "1000000000"),
        ("999999999.999999999", MOST_UNITS - 1, "999999999.999999999"),
        ("-2.5", -2_500_000_000, "-2.5"),
    ],
)
def test_credits_round_trip_through_base_units(credits: str, units: int, shown: str) -> None:
    assert to_units(credits) == units
    assert format_credits(units) == shown


@pytest.mark.parametrize(
    "credits",
    [" 9.75 ", "9.750000000", "+9.75", "975e-2", "0.975E1", 9, Decimal("9.75"), Decimal("9.750")],
    ids=repr,
)
def test_equal_ways_of_writing_an_amount_give_the_same_units(credits: str | int) -> None:
    expected = 9 * UNITS_PER_CREDIT if credits == 9 else 9_750_000_000
    assert to_units(credits) == expected


def test_zero_has_no_sign_or_decimals_when_shown() -> None:
    assert to_units("-0.000") == 0
    assert format_credits(0) == "0"


@pytest.mark.parametrize(
    "credits",
    [
        "0.0000000001",
        "9.7500000001",
        "1.0000000000000000000000000000001",
        "5.0000000000000000000000000001",
        "1e-10",
        "1e-1000000000",
        "0.000000000" + "0" * 40 + "1",
    ],
)
def test_more_than_nine_decimals_is_refused(credits: str) -> None:
    with pytest.raises(AmountError, match="nine decimal places"):
        to_units(credits)


@pytest.mark.parametrize(
    "credits", ["NaN", "nan", "sNaN", "-NaN", "inf", "Infinity", "-inf", "-Infinity"]
)
def test_not_a_number_and_infinity_are_refused(credits: str) -> None:
    with pytest.raises(AmountError, match="not a number of credits"):
        to_units(credits)


@pytest.mark.parametrize(
    "credits",
    ["", "   ", "ten", "1.2.3", "1,5", "0x10", "$5", "5 credits", "1e", "--1", True, "1_0", "1 0"],
)
def test_garbage_is_refused(credits: str | bool) -> None:
    with pytest.raises(AmountError, match="not a number of credits"):
        to_units(credits)


@pytest.mark.parametrize(
    "credits",
    ["1000000000.000000001", "1e10", "-1e10", "1" + "0" * 30, "9" * 100, "1e999999999", 10**10],
)
def test_more_than_the_ledger_holds_is_refused(credits: str | int) -> None:
    with pytest.raises(AmountError, match="more than the ledger holds"):
        to_units(credits)


def test_an_amount_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        to_units("ten")


def test_large_balances_are_shown_without_an_exponent() -> None:
    assert format_credits(2**63 - 1) == "9223372036.854775807"
    assert format_credits(-(10**18)) == "-1000000000"


@given(st.integers(min_value=-MOST_UNITS, max_value=MOST_UNITS))
def test_any_number_of_units_survives_being_shown_and_read_back(units: int) -> None:
    shown = format_credits(units)

    assert to_units(shown) == units
    assert "e" not in shown.lower()
    assert not ("." in shown and shown.endswith("0"))


@given(
    st.decimals(
        min_value=-(10**9), max_value=10**9, places=9, allow_nan=False, allow_infinity=False
    )
)
def test_any_amount_with_nine_decimals_survives_a_round_trip(credits: Decimal) -> None:
    units = to_units(credits)

    assert Decimal(format_credits(units)) == credits
    assert to_units(format_credits(units)) == units


@given(
    whole=st.integers(min_value=0, max_value=10**9 - 1),
    nine=st.text("0123456789", min_size=9, max_size=9),
    more=st.text("0123456789", max_size=30),
    last=st.sampled_from("123456789"),
)
def test_any_amount_with_a_tenth_decimal_is_refused(
    whole: int, nine: str, more: str, last: str
) -> None:
    with pytest.raises(AmountError, match="nine decimal places"):
        to_units(f"{whole}.{nine}{more}{last}")
