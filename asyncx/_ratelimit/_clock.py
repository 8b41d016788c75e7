"""The server's clock: bounds on X's clock minus ours, narrowed by every answer and by a few probes."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping

from ._answers import HORIZON, server_date

__all__ = ["ServerClock"]

log = logging.getLogger("asyncx.scheduler")

#: How well (seconds) the server's clock is worth knowing; past this, probing stops.
PRECISION = 0.05


class ServerClock:
    """Bounds on the server's clock minus ours, narrowed by every response.

    ``Date`` is whole seconds, so one response says only that the server's clock, when it answered,
    was in ``[date, date + 1)`` while ours was in ``[sent, received]``. Many responses narrow that.
    Waits use the lower bound: waking a little late is cheap, waking early costs a 429.
    """

    __slots__ = ("bounds", "high", "low")

    def __init__(self) -> None:
        self.low = -math.inf
        self.high = math.inf
        #: ``(low, high)`` once anything is known, as stores take it.
        self.bounds: tuple[float, float] | None = None

    def observe(self, date: float, sent: float, received: float) -> None:
        low, high = date - received, date + 1.0 - sent
        if low > self.high or high < self.low:  # a clock jumped: start again from this response
            self.low, self.high = low, high
        else:
            self.low, self.high = max(self.low, low), min(self.high, high)
        self.bounds = (self.low, self.high)

    def worth_refining(self) -> bool:
        """Known roughly, but not to within ``PRECISION``."""
        return self.low != -math.inf and self.high - self.low > PRECISION

    async def refine(
        self,
        probe: Callable[[], Awaitable[Mapping[str, str]]],
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        first_wake: Callable[[], float | None],
    ) -> bool:
        """Pin the clock down with a few unauthenticated probes while someone waits long enough to gain.

        ``Date`` has whole seconds, and a burst of answers often shows one phase of it, leaving the
        clock known to within a second: a wake-up up to a second late at every reset. Each probe is
        timed for the moment the server's second would tick if the offset were the middle of what we
        know, so its ``Date`` halves the doubt, as htpdate does. True when anything was learned.
        """
        learned = False
        try:
            for _ in range(12):
                width = self.high - self.low
                if width <= PRECISION:
                    break
                now = clock()
                middle = (self.low + self.high) / 2
                target = math.ceil(now + 0.02 + middle) - middle
                wake = first_wake()
                if wake is None or wake - target < 0.5:
                    break  # nobody waits long enough to gain from it
                await sleep(target - now)
                sent = clock()
                date = server_date(await probe())
                if date is None or abs(date - sent) > HORIZON:
                    break
                self.observe(date, sent, clock())
                learned = True
                if self.high - self.low > 0.75 * width:
                    break  # the round trip is too long to learn more
        except Exception as exc:  # a failed probe only leaves the estimate as it was
            log.debug("clock probe failed: %s", exc.__class__.__name__)
        return learned
