"""The rate limits asyncx assumes before X's headers say otherwise, and how configuration overrides them.

Numbers come from X's documentation (see ``shared/x-api-facts.md``); the server's headers always win.
Collections have no published number: their limit is learned from the first answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ._errors import ValidationError
from ._models import RateLimit

__all__ = ["APP_PREFIX", "DEFAULT_LIMITS", "ENDPOINT_NAMES", "resolve_limits"]

ENDPOINT_NAMES = ("create_tweet", "bookmark", "add_collection_entry", "curate_collection")

#: Keys with this prefix configure app-wide limits: ``{"app:create_tweet": RateLimit(10_000, 86_400)}``.
APP_PREFIX = "app:"

#: Per-user windows by endpoint, and app-wide ones under ``app:<endpoint>``.
DEFAULT_LIMITS: Mapping[str, tuple[RateLimit, ...]] = {
    "create_tweet": (RateLimit(100, 900.0),),
    "bookmark": (RateLimit(50, 900.0),),
    "app:create_tweet": (RateLimit(10_000, 86_400.0),),
}


def resolve_limits(
    overrides: Mapping[str, RateLimit | Sequence[RateLimit]] | None,
) -> dict[str, tuple[RateLimit, ...]]:
    """The defaults with ``overrides`` applied: a key set to ``[]`` removes that endpoint's limits."""
    limits = dict(DEFAULT_LIMITS)
    for key, value in (overrides or {}).items():
        name = key.removeprefix(APP_PREFIX)
        if name not in ENDPOINT_NAMES:
            raise ValidationError(
                f"unknown endpoint {key!r}; use one of {', '.join(ENDPOINT_NAMES)}", "rate_limits"
            )
        windows = (value,) if isinstance(value, RateLimit) else tuple(value)
        if not all(isinstance(w, RateLimit) for w in windows):
            raise ValidationError(f"{key}: must be a RateLimit or a list of them", "rate_limits")
        limits[key] = windows
    return limits
