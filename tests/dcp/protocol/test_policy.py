"""The failure rules: a slice gets one retry, and the reasons a job is cancelled with."""

from __future__ import annotations

from dcp.protocol import policy


def test_a_slice_is_retried_once_then_gives_up():
    assert not policy.gives_up(1)
    assert policy.gives_up(policy.MAX_ATTEMPTS)


def test_the_cancel_reasons_name_the_slice_and_what_happened():
    assert (
        policy.too_many_errors_reason(3, 2, "ZeroDivisionError", "division by zero")
        == "slice 3 failed 2 times: ZeroDivisionError: division by zero"
    )
    assert policy.no_progress_reason(4, 60) == "slice 4 made no progress for 60 s twice"
