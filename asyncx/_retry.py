"""The retry policy: which failures are worth another attempt, and how long to wait before it.

Built on tenacity: ``RetryPolicy`` holds a tenacity ``stop`` and ``wait`` (exponential backoff with full
jitter by default) and an overall deadline per call; ``retrying(...)`` turns it into an
``AsyncRetrying`` with an injectable sleep. A ``Retry-After`` header, when X or a proxy sends one, sets
the wait instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs

from ._errors import (
    APIError,
    FieldError,
    RateLimited,
    ServerError,
    StoreUnavailable,
    TransportError,
    ValidationError,
)
from ._ratelimit import retry_after, server_date
from ._validation import check_seconds, raise_if

if TYPE_CHECKING:
    import tenacity
    from tenacity.stop import stop_base
    from tenacity.wait import wait_base

__all__ = ["RetryPolicy", "is_retryable", "retrying"]

#: 5xx answers that say nothing was done, or that it is worth trying again.
RETRY_STATUSES = frozenset({500, 502, 503, 504})


# tenacity loads with the first policy, not with asyncx: a process that never makes a client never needs it.


def _default_stop() -> stop_base:
    import tenacity

    return tenacity.stop_after_attempt(6)


def _default_wait() -> wait_base:
    import tenacity

    return tenacity.wait_random_exponential(multiplier=0.5, max=30.0)


@attrs.frozen
class RetryPolicy:
    """How a call retries transient failures: connection errors, timeouts, 500/502/503/504, 429s
    that carried no usable reset, and a shared rate-limit store that cannot be reached.

    ``stop`` and ``wait`` are tenacity strategies (default: 6 attempts; exponential backoff with full
    jitter from 0.5 s, capped at 30 s). No retry starts more than ``deadline`` seconds after the call did
    (waits for rate budget are bounded by ``max_wait`` instead). ``Client(retry=None)`` makes one attempt.
    """

    stop: stop_base = attrs.field(factory=_default_stop)
    wait: wait_base = attrs.field(factory=_default_wait)
    deadline: float | None = 900.0

    def __attrs_post_init__(self) -> None:
        for name in ("stop", "wait"):
            if not callable(getattr(self, name)):
                raise ValidationError("must be a tenacity strategy", field=name)
        errors: list[FieldError] = []
        if self.deadline is not None:
            check_seconds(errors, "deadline", self.deadline, infinite=True)
        raise_if(errors)


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt may succeed where this one failed."""
    if isinstance(exc, TransportError):
        return exc.retryable
    if isinstance(exc, StoreUnavailable):
        return True  # nothing was sent, so waiting for the store to return is safe
    if isinstance(exc, RateLimited):
        return exc.retry_at is None  # with a known reset, the scheduler already waited it out
    return isinstance(exc, ServerError) and exc.status in RETRY_STATUSES


class _wait_retry_after:
    """The policy's wait, unless the failure named its own with ``Retry-After``."""

    __slots__ = ("fallback",)

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, APIError):
            # A date is read against the answer's own Date: both are the server's clock.
            after = retry_after(exc.headers, server_date(exc.headers) or time.time())
            if after is not None:
                return after
        return float(self.fallback(retry_state))


def retrying(
    policy: RetryPolicy | None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    deadline: Callable[[tenacity.RetryCallState], bool] | None = None,
) -> tenacity.AsyncRetrying:
    """An ``AsyncRetrying`` for one call under ``policy`` (``None``: a single attempt).

    ``deadline`` is a further stop condition: the call's deadline on the client's clock.
    """
    import tenacity

    if policy is None:
        return tenacity.AsyncRetrying(stop=tenacity.stop_after_attempt(1), reraise=True, sleep=sleep)
    return tenacity.AsyncRetrying(
        stop=policy.stop if deadline is None else tenacity.stop_any(policy.stop, deadline),  # type: ignore[arg-type]
        wait=_wait_retry_after(policy.wait),
        retry=tenacity.retry_if_exception(is_retryable),
        reraise=True,
        sleep=sleep,
    )
