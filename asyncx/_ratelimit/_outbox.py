"""The outbox: settles and refunds the store could not take, replayed in order once it answers again.

Without it, an answer lost to a store outage leaves its window counted "in flight" with no reset, and
the budget stalls until the flight TTL passes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

__all__ = ["Outbox"]

#: Backoff (seconds) between replays while the store is still down: first, and longest.
RETRY = (0.25, 5.0)


class Outbox:
    """Calls to the store kept for later; one task replays them, with backoff, until all went through."""

    __slots__ = ("_pending", "_sleep", "_task", "closed")

    def __init__(self, sleep: Callable[[float], Awaitable[None]]) -> None:
        self._sleep = sleep
        self._pending: deque[Callable[[], Awaitable[object]]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self._pending)

    def keep(self, replay: Callable[[], Awaitable[object]]) -> None:
        self._pending.append(replay)
        self.nudge()

    def nudge(self) -> None:
        """The store may answer again: start replaying, unless a replay is under way."""
        if self._pending and self._task is None and not self.closed:
            self._task = asyncio.get_running_loop().create_task(self.flush(patient=True))

    async def flush(self, patient: bool = False) -> None:
        """Replay in order; with ``patient``, wait out failures with backoff until done."""
        delay, longest = RETRY
        while self._pending:
            try:
                await self._pending[0]()
            except Exception:
                if not patient or self.closed:
                    return
                await self._sleep(delay)
                delay = min(delay * 2, longest)
                continue
            self._pending.popleft()
            delay = RETRY[0]
        if patient:
            self._task = None

    async def aclose(self) -> None:
        """Stop replaying in the background, then try once more."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.flush()
