"""The month's data budget on a metered link: what may still go, and how the status says so.

Bytes are counted per calendar month in UTC (``Outbox.usage``). Near the end of the budget
(``hold_low_priority_at``, 90 % by default) telemetry and other LOW items wait; once the whole budget
is used only HIGH items (audit records, job results) go: a technician's proof of work is never held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from siteline.core.outbox.model import Priority

MB = 1_000_000  # data plans count in decimal megabytes


@dataclass(frozen=True)
class BudgetDecision:
    """``max_priority``: the largest priority number that may go now (None: everything may go)."""

    max_priority: int | None
    used: int
    budget: int | None
    message: str  # empty when nothing is held

    @property
    def holds(self) -> bool:
        return self.max_priority is not None


def next_month_start(now: float) -> datetime:
    """Midnight UTC on the first day of the month after ``now`` (when the count starts again)."""
    today = datetime.fromtimestamp(now, UTC)
    if today.month == 12:
        return datetime(today.year + 1, 1, 1, tzinfo=UTC)
    return datetime(today.year, today.month + 1, 1, tzinfo=UTC)


def _mb(nbytes: int) -> str:
    return f"{nbytes / MB:.1f}"


def decide(used: int, budget: int | None, hold_at: float, now: float) -> BudgetDecision:
    """What may go with ``used`` bytes of a monthly ``budget`` (None or <= 0: no budget, all goes)."""
    if budget is None or budget <= 0:
        return BudgetDecision(None, used, None, "")
    hold_at = min(max(hold_at, 0.0), 1.0)
    until = next_month_start(now).strftime("%d %b %Y").lstrip("0")
    amount = f"{_mb(used)} of {_mb(budget)} MB this month"
    if used >= budget:
        return BudgetDecision(int(Priority.HIGH), used, budget,
                              f"Data budget used up ({amount}): only audit records and job results go until "
                              f"{until} or the budget is raised; everything else is held.")
    if used >= hold_at * budget:
        percent = int(used * 100 // budget)
        return BudgetDecision(int(Priority.NORMAL), used, budget,
                              f"Data budget {percent}% used ({amount}): telemetry is held until {until} or the "
                              "budget is raised; audit and job results still go.")
    return BudgetDecision(None, used, budget, "")


def held_count(pending_by_priority: dict[int, int], decision: BudgetDecision) -> int:
    """How many waiting items the decision holds back."""
    if decision.max_priority is None:
        return 0
    return sum(n for prio, n in pending_by_priority.items() if prio > decision.max_priority)
