"""Reading X's rate-limit headers and the server's clock from a response."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import NamedTuple

__all__ = ["LimitReading", "read_limits", "retry_after", "server_date"]

#: Header prefixes and the scope each one speaks for.
SCOPES = (
    ("x-rate-limit", "window"),
    ("x-user-limit-24hour", "user-24h"),
    ("x-app-limit-24hour", "app-24h"),
)


class LimitReading(NamedTuple):
    """One limit as a response reports it; ``reset`` is on the server's clock (epoch seconds)."""

    limit: int | None
    remaining: int
    reset: int


#: (scope, remaining header, reset header, limit header), spelled out once: this runs for every response.
_KEYS = tuple((scope, f"{p}-remaining", f"{p}-reset", f"{p}-limit") for p, scope in SCOPES)


def read_limits(headers: Mapping[str, str]) -> dict[str, LimitReading]:
    """Every limit the headers report with both a remaining count and a reset time, by scope."""
    readings = {}
    for scope, remaining_key, reset_key, limit_key in _KEYS:
        remaining = headers.get(remaining_key)
        if remaining is None:
            continue
        reset = headers.get(reset_key)
        if reset is None or not remaining.isdigit() or not reset.isdigit():
            continue
        limit = headers.get(limit_key)
        readings[scope] = LimitReading(
            int(limit) if limit and limit.isdigit() else None, int(remaining), int(reset)
        )
    return readings


@lru_cache(maxsize=16)
def _parse_date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def server_date(headers: Mapping[str, str]) -> float | None:
    """The server's clock from ``Date``: whole seconds, so the true time is up to 1 s later."""
    value = headers.get("date")
    return _parse_date(value) if value else None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds, if any."""
    value = headers.get("retry-after")
    return float(value) if value is not None and value.strip().isdigit() else None
