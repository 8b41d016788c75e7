"""Reading X's rate-limit headers and the server's clock from a response."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from functools import lru_cache

import attrs

__all__ = ["LimitReading", "read_limits", "retry_after", "server_date"]

#: Header prefixes and the scope each one speaks for.
SCOPES = (
    ("x-rate-limit", "window"),
    ("x-user-limit-24hour", "user-24h"),
    ("x-app-limit-24hour", "app-24h"),
)


@attrs.frozen
class LimitReading:
    """One limit as a response reports it; ``reset`` is on the server's clock (epoch seconds)."""

    scope: str
    limit: int | None
    remaining: int
    reset: int


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() else None


def read_limits(headers: Mapping[str, str]) -> tuple[LimitReading, ...]:
    """Every limit the headers report with both a remaining count and a reset time."""
    readings = []
    for prefix, scope in SCOPES:
        remaining = _int(headers.get(f"{prefix}-remaining"))
        reset = _int(headers.get(f"{prefix}-reset"))
        if remaining is not None and reset is not None:
            readings.append(LimitReading(scope, _int(headers.get(f"{prefix}-limit")), remaining, reset))
    return tuple(readings)


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
    value = _int(headers.get("retry-after"))
    return float(value) if value is not None else None
