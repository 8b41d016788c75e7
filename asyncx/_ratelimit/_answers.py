"""Reading X's answer as the rate limiter needs it: limits, the server's clock and ``Retry-After``.

Servers send garbage too: a reset ten years ahead, a superscript digit, ``Retry-After: 999999999``. A
value that cannot be right is dropped here, and named in ``problems`` so the scheduler can warn once;
it never becomes a wait, and reading an answer never raises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import NamedTuple

__all__ = ["LimitReading", "ServerAnswer", "read_answer", "retry_after", "server_date"]

#: Header prefixes and the scope each one speaks for.
SCOPES = (
    ("x-rate-limit", "window"),
    ("x-user-limit-24hour", "user-24h"),
    ("x-app-limit-24hour", "app-24h"),
)

#: The longest any of X's windows lasts, plus slack for skewed clocks: nothing X says reaches further.
HORIZON = 86_400.0 + 3_600.0
#: Counts with more digits than this are not X's.
_MAX_DIGITS = 10


class LimitReading(NamedTuple):
    """One limit as a response reports it; ``reset`` is on the server's clock (epoch seconds)."""

    limit: int | None
    remaining: int
    reset: int


class ServerAnswer(NamedTuple):
    """What the scheduler needs of one answer: status, limits by scope, the server's clock (``Date``),
    ``Retry-After`` in seconds, and what was dropped as impossible."""

    status: int
    limits: Mapping[str, LimitReading]
    date: float | None = None
    retry_after: float | None = None
    problems: tuple[str, ...] = ()


#: (scope, remaining header, reset header, limit header), spelled out once: this runs for every response.
_KEYS = tuple((scope, f"{p}-remaining", f"{p}-reset", f"{p}-limit") for p, scope in SCOPES)


@lru_cache(maxsize=4096)
def _count(value: str) -> int | None:
    """A count in plain ASCII digits, or None (superscripts, signs, NaN and the like). Cached: X's
    answers repeat the same few values, and this runs three times for every answer."""
    value = value.strip()
    if not value or len(value) > _MAX_DIGITS or not value.isascii() or not value.isdigit():
        return None
    return int(value)


@lru_cache(maxsize=16)
def _parse_date(value: str) -> float | None:
    try:
        stamp = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return stamp if math.isfinite(stamp) else None


def server_date(headers: Mapping[str, str]) -> float | None:
    """The server's clock from ``Date``: whole seconds, so the true time is up to 1 s later."""
    value = headers.get("date")
    return _parse_date(value) if value else None


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds, or an HTTP date read against ``now``), if usable."""
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _count(value)
    if seconds is None and now is not None:
        when = _parse_date(value)
        seconds = None if when is None or when < now else math.ceil(when - now)
    return float(seconds) if seconds is not None and seconds <= HORIZON else None


def read_answer(status: int, headers: Mapping[str, str], now: float) -> ServerAnswer:
    """The rate-limit reading of one answer; ``now`` is the local clock, used where ``Date`` is missing.

    A 429 means the window is empty whatever ``remaining`` says (some servers report the count before
    the refusal): when no reading says 0, the per-user window's does, and its reset is dropped as one
    that cannot be trusted.
    """
    problems: list[str] = []
    date = server_date(headers)
    if date is None and headers.get("date"):
        problems.append(f"unreadable Date {headers['date']!r}")
    elif date is not None and abs(date - now) > HORIZON:
        problems.append(f"Date {headers['date']!r} is more than a day from this clock")
        date = None
    ref = now if date is None else date
    limits: dict[str, LimitReading] = {}
    for scope, remaining_key, reset_key, limit_key in _KEYS:
        raw_remaining = headers.get(remaining_key)
        if raw_remaining is None:
            continue
        remaining, raw_reset = _count(raw_remaining), headers.get(reset_key, "")
        reset = _count(raw_reset)
        raw_limit = headers.get(limit_key)
        limit = None if raw_limit is None else _count(raw_limit)
        if remaining is None or reset is None or (raw_limit is not None and limit is None):
            problems.append(f"unreadable {scope} limit ({raw_remaining!r} remaining, reset {raw_reset!r})")
        elif abs(reset - ref) > HORIZON:
            problems.append(f"{scope} reset {raw_reset} is more than a day from the server's clock")
        elif limit is not None and remaining > limit:
            problems.append(f"{scope} remaining {remaining} exceeds its limit {limit}")
        else:
            limits[scope] = LimitReading(limit or None, remaining, reset)
    after = None
    if "retry-after" in headers:
        after = retry_after(headers, ref)
        if after is None:
            problems.append(f"unusable Retry-After {headers['retry-after']!r}")
    if status == 429 and limits and all(r.remaining for r in limits.values()):
        # Refused while every count says there is room: the headers cannot be right, so their reset is
        # not taken at its word either (an emulator's static "14 left, reset in 900 s" would park the
        # budget for a whole window). Reset 0 reads as "passed": the store then waits for the reset it
        # knew already, or probes once shortly after, which costs at most one more 429 a window.
        scope = "window" if "window" in limits else next(iter(limits))
        reading = limits[scope]
        problems.append(
            f"429 while {scope} remaining was {reading.remaining}: its reset {reading.reset} ignored"
        )
        limits[scope] = reading._replace(remaining=0, reset=0)
    return ServerAnswer(status, limits, date, after, tuple(problems))
