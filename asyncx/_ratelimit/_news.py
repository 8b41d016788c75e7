"""News of answers: which budgets wait for the next answer in a window, and whether it already came.

A budget told by the store "wait for the answer of the send in flight in this window" waits here. In a
shared store that news can overtake the store's own reply, so every piece of news is numbered as it
comes: a budget that asked at number ``n`` and finds newer news for its window asks again instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

__all__ = ["News"]

T = TypeVar("T")

#: How many pieces of news are remembered: more than can overtake one store round trip.
MEMORY = 4096


class News(Generic[T]):
    """Budgets waiting for an answer in a window, released by ``heard(key)``."""

    __slots__ = ("_answered", "_release", "_resynced", "_waiting", "count")

    def __init__(self, release: Callable[[T, str], None]) -> None:
        self._release = release
        self._waiting: dict[str, list[T]] = {}  # window key -> budgets waiting for its answer
        self._answered: dict[str, int] = {}  # window key -> number of the last news of it
        self._resynced = -1  # number of the last time news may have been missed
        #: Pieces of news so far: note it before asking the store, pass it to ``wait``.
        self.count = 0

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def wait(self, key: str, item: T, asked_at: int) -> bool:
        """Wait for the next answer in ``key``; False when one came since ``asked_at`` (ask again)."""
        if max(self._answered.get(key, -1), self._resynced) > asked_at:
            return False
        waiting = self._waiting.setdefault(key, [])
        if item not in waiting:
            waiting.append(item)
        return True

    def heard(self, key: str | None) -> None:
        """An answer came in window ``key`` (None: any may have): its waiters are released."""
        self.count += 1
        if key is None:
            self._resynced = self.count
            for each in list(self._waiting):
                self.heard(each)
            return
        answered = self._answered
        answered[key] = self.count
        if len(answered) > MEMORY:
            self._answered = {k: n for k, n in answered.items() if n > self.count - MEMORY}
        for item in self._waiting.pop(key, ()):
            self._release(item, key)

    @property
    def waiting(self) -> bool:
        """Whether any budget waits for news (most of the time none does)."""
        return bool(self._waiting)

    def heard_any(self, keys: Iterable[str]) -> None:
        """Answers came in these windows: release whoever waits on one of them."""
        if self._waiting:
            for key in keys:
                if key in self._waiting:
                    self.heard(key)
