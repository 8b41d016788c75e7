"""Counters: what each budget, and each endpoint in total, has sent, waited, been refused."""

from __future__ import annotations

import attrs

__all__ = ["BudgetStats", "Counters"]


@attrs.frozen
class BudgetStats:
    """Counters for one budget (or a total): sends made, seconds spent waiting, 429s, max_wait refusals."""

    sent: int = 0
    waited_seconds: float = 0.0
    rate_limited: int = 0
    rejected: int = 0


class Counters:
    """Mutable counters behind a ``BudgetStats``: one per budget, one per endpoint for totals."""

    __slots__ = ("rate_limited", "rejected", "sent", "waited")

    def __init__(self) -> None:
        self.sent = 0
        self.waited = 0.0
        self.rate_limited = 0
        self.rejected = 0

    def stats(self) -> BudgetStats:
        return BudgetStats(self.sent, self.waited, self.rate_limited, self.rejected)

    @staticmethod
    def total(parts: list[BudgetStats]) -> BudgetStats:
        return BudgetStats(
            sum(p.sent for p in parts),
            sum(p.waited_seconds for p in parts),
            sum(p.rate_limited for p in parts),
            sum(p.rejected for p in parts),
        )
