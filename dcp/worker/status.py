"""What the worker has done, added up across browser restarts, and the line that shows it."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any


@dataclass(frozen=True)
class Stats:
    """One reading of window.dcpWorker.stats() (see worker_static/headless.js)."""

    slices_computed: int = 0
    credits_earned: Decimal = Decimal(0)
    in_flight: int = 0
    state: str = "starting"
    jobs: tuple[str, ...] = ()
    error: str = ""

    @classmethod
    def from_page(cls, raw: dict[str, Any]) -> Stats:
        return cls(
            slices_computed=int(raw.get("slicesComputed") or 0),
            credits_earned=_credits(raw.get("creditsEarned")),
            in_flight=int(raw.get("inFlight") or 0),
            state=str(raw.get("state") or "starting"),
            jobs=tuple(str(job) for job in raw.get("jobs") or ()),
            error=str(raw.get("error") or ""),
        )


def _credits(text: Any) -> Decimal:
    try:
        return Decimal(str(text or "0"))
    except InvalidOperation:
        return Decimal(0)


@dataclass
class Totals:
    """The totals of this run: those of pages that crashed (as their last poll read them: what a
    page earned after that, the ledger has but this cannot know), plus the live page's."""

    done_before: Stats = field(default_factory=Stats)  # pages that are gone
    live: Stats = field(default_factory=Stats)

    def page_lost(self, state: str) -> None:
        """The live page is gone: keep what it earned, start the next page from nothing."""
        self.done_before = Stats(
            slices_computed=self.slices_computed, credits_earned=self.credits_earned
        )
        self.live = Stats(state=state)

    @property
    def slices_computed(self) -> int:
        return self.done_before.slices_computed + self.live.slices_computed

    @property
    def credits_earned(self) -> Decimal:
        return self.done_before.credits_earned + self.live.credits_earned


def status_line(totals: Totals) -> str:
    """One line: state, slices computed, credits earned, slices in flight, current jobs."""
    live = totals.live
    jobs = ", ".join(live.jobs) if live.jobs else "none"
    credits = format(totals.credits_earned.normalize(), "f")
    return (
        f"{live.state}: {totals.slices_computed} slices computed, {credits} credits earned, "
        f"{live.in_flight} in flight, jobs: {jobs}"
    )
