"""Rate-limit scheduling: every single send happens inside ``async with scheduler.acquire(...)``.

The permit it yields is told each response (``permit.settle``), so the scheduler learns X's view of
the budget from the headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from ._transport import Response

__all__ = ["Permit", "Scheduler", "Unlimited"]


class Permit(Protocol):
    """The right to make one send; ``settle`` hands it the response, success or not."""

    def settle(self, response: Response) -> None: ...


class Scheduler(Protocol):
    """Grants permits per (user, endpoint) budget; may wait, or raise ``RateLimited``."""

    def acquire(
        self, user: str, endpoint: str, *, max_wait: float | None
    ) -> AbstractAsyncContextManager[Permit]: ...


class _NoPermit:
    def settle(self, response: Response) -> None:
        return None


class Unlimited:
    """A scheduler that never waits: every acquire succeeds at once."""

    _permit = _NoPermit()

    @asynccontextmanager
    async def acquire(self, user: str, endpoint: str, *, max_wait: float | None) -> AsyncIterator[Permit]:
        yield self._permit
