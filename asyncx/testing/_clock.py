"""A clock that moves only when told to, for tests that must not sleep."""

from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["ManualClock"]

#: Event-loop turns given to woken sleepers, so that chains of awaits they start can finish.
_SETTLE_TURNS = 20


class ManualClock:
    """Epoch seconds that advance only through ``advance``; ``sleep`` waits for that.

    Pass ``clock.time`` and ``clock.sleep`` wherever asyncx takes a clock and a sleep. Sleepers wake in
    deadline order as ``advance`` moves the time past their deadlines.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        """The clock's time, in epoch seconds (calling the clock itself gives the same)."""
        return self._now

    __call__ = time

    @property
    def sleepers(self) -> int:
        """How many ``sleep`` calls are waiting (cancelled ones excluded)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def sleep(self, seconds: float) -> None:
        """Wait until ``advance`` moves the clock ``seconds`` on (a wait of 0 or less yields once)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline has come, and let them run."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not future.done():
                future.set_result(None)
                for _ in range(_SETTLE_TURNS):
                    await asyncio.sleep(0)
        self._now = target
        for _ in range(_SETTLE_TURNS):
            await asyncio.sleep(0)
