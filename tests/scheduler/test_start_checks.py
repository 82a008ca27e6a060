"""Settings of the scheduler that would fail later are refused when the portal starts."""

from __future__ import annotations

from typing import Any

from portal.scheduler.apps import check_commission


def test_a_commission_that_is_not_a_percentage_stops_the_portal_from_starting(
    settings: Any,
) -> None:
    for wrong in ("-1", "100.5", "ten"):
        settings.SCHEDULER_COMMISSION_PERCENT = wrong
        assert [error.id for error in check_commission()] == ["scheduler.E002"]
    settings.SCHEDULER_COMMISSION_PERCENT = "2.5"
    assert check_commission() == []
