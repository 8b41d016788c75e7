"""Wake-ups: one timer for every parked budget, so waiting costs a heap entry and nothing else."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Wakeups"]

T = TypeVar("T")

log = logging.getLogger("asyncx.scheduler")


class Wakeups(Generic[T]):
    """Calls ``on_wake(item, deadline)`` once the clock reaches each scheduled deadline.

    An entry is never removed early: the callback tells a superseded one (its item rescheduled or
    woken since) from a live one. One task sleeps until the earliest deadline.
    """

    __slots__ = ("_at", "_clock", "_heap", "_on_wake", "_seq", "_sleep", "_task")

    def __init__(
        self,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        on_wake: Callable[[T, float], None],
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._on_wake = on_wake
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._at: float | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[T]:
        return (item for _, _, item in list(self._heap))

    def first(self) -> float | None:
        """The earliest deadline scheduled, if any."""
        return self._heap[0][0] if self._heap else None

    def schedule(self, deadline: float, item: T) -> None:
        heapq.heappush(self._heap, (deadline, next(self._seq), item))
        if self._at is None or deadline < self._at:
            if self._task is not None:
                self._task.cancel()
            self._at = deadline
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        # No finally: a task replaced by an earlier deadline, or closed, must not touch the state.
        heap = self._heap
        while heap:
            deadline = heap[0][0]
            delay = deadline - self._clock()
            if delay > 0:
                self._at = deadline
                await self._sleep(delay)
                continue
            _, _, item = heapq.heappop(heap)
            try:
                self._on_wake(item, deadline)
            except Exception:  # one bad wake-up must not stop the others
                log.exception("a rate-limit wake-up failed")
        self._task, self._at = None, None

    def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = self._at = None
