"""Fair queues: each budget's FIFO of waiting calls, and the ring that shares in-flight slots.

Both cost O(1) per call whatever the backlog: the FIFO counts its live waiters as they come and go,
and the ring holds each budget once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

from .._errors import RateLimited

__all__ = ["Ring", "Waiters"]

T = TypeVar("T")


class Waiters(Generic[T]):
    """A budget's waiting calls in arrival order; ``live`` counts those not yet granted or gone.

    A call counts until the first of: it is popped, it leaves (cancelled by its caller), it expires. A
    cancelled call's future is done at once, while its task learns of it only later: counting by
    membership, not by who noticed first, keeps ``live`` exact in between.
    """

    __slots__ = ("_counted", "_queue")

    def __init__(self) -> None:
        self._queue: deque[tuple[asyncio.Future[T], float | None]] = deque()
        self._counted: set[asyncio.Future[T]] = set()

    @property
    def live(self) -> int:
        return len(self._counted)

    def push(self, future: asyncio.Future[T], deadline: float | None) -> None:
        """Queue a call that gives up at ``deadline`` (local time; None: never)."""
        self._queue.append((future, deadline))
        self._counted.add(future)

    def left(self, future: asyncio.Future[T]) -> None:
        """A queued call was cancelled by its caller."""
        self._counted.discard(future)

    def pop(self) -> asyncio.Future[T] | None:
        """The first call still waiting, taken off the queue; None when there is none."""
        queue = self._queue
        while queue:
            future, _ = queue.popleft()
            self._counted.discard(future)
            if not future.done():
                return future
        return None

    def fail_all(self, exc: BaseException) -> None:
        while (future := self.pop()) is not None:
            future.set_exception(exc)

    def expire(self, wake: float) -> Iterator[asyncio.Future[T]]:
        """Fail, with ``RateLimited``, every live call whose deadline comes before ``wake``; yields each."""
        for future, deadline in list(self._queue):
            if deadline is not None and deadline < wake and not future.done():
                self._counted.discard(future)
                future.set_exception(
                    RateLimited(429, retry_at=wake, message="the wait for budget would pass max_wait")
                )
                yield future


class Ring(Generic[T]):
    """Budgets waiting for an in-flight slot, served round-robin.

    ``kept`` counts slots freed and kept for budgets popped from the ring until they use them, so a
    budget that just arrived cannot take a slot a waiting one was promised.
    """

    __slots__ = ("_ring", "kept")

    def __init__(self) -> None:
        self._ring: deque[T] = deque()
        self.kept = 0

    def __bool__(self) -> bool:
        return bool(self._ring)

    def join(self, item: T) -> None:
        self._ring.append(item)

    def next(self) -> T | None:
        """The budget whose turn it is, with a slot kept for it."""
        if not self._ring:
            return None
        self.kept += 1
        return self._ring.popleft()

    def used(self) -> None:
        """A budget popped with a kept slot has started using it (or given it up)."""
        self.kept -= 1
