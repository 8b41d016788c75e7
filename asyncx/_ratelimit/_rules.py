"""Window rules: the limits asyncx assumes before X's headers say otherwise, how configuration overrides
them, and which windows each budget needs room in.

Numbers come from X's documentation (see ``shared/x-api-facts.md``); the server's headers always win.
Collections have no published number: their limit is learned from the first answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .._endpoints import ENDPOINT_NAMES, ENDPOINTS
from .._errors import ValidationError
from .._models import RateLimit
from ._store import SEP, WindowLike, WindowSpec

__all__ = ["APP_PREFIX", "DEFAULT_LIMITS", "ENDPOINT_NAMES", "Rules", "resolve_limits"]

#: Keys with this prefix configure app-wide limits: ``{"app:create_tweet": RateLimit(10_000, 86_400)}``.
APP_PREFIX = "app:"

#: Per-user windows by endpoint, and app-wide ones under ``app:<endpoint>``: the registry's.
DEFAULT_LIMITS: Mapping[str, tuple[RateLimit, ...]] = {
    **{e.name: e.limits for e in ENDPOINTS.values() if e.limits},
    **{APP_PREFIX + e.name: e.app_limits for e in ENDPOINTS.values() if e.app_limits},
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


DAY = 86_400.0


class Rules:
    """Which windows each budget needs room in, and what X has taught about their limits.

    A per-user window is the user's own; an app-wide one is shared by every user of the endpoint. A
    documented default is a guess (probed with one request until X answers); what the caller set is not.
    ``scopes`` name, per window, the header scope that speaks for it (``window``, ``user-24h``,
    ``app-24h``) or None.
    """

    __slots__ = ("_app", "_configured", "_learned", "_limits", "_scopes")

    def __init__(self, limits: Mapping[str, RateLimit | Sequence[RateLimit]] | None) -> None:
        self._limits = resolve_limits(limits)
        self._configured = frozenset(limits or ())
        self._learned: dict[str, dict[str, int]] = {}  # endpoint -> scope -> limit X reported
        self._app: dict[str, tuple[WindowSpec, ...]] = {}
        self._scopes: dict[tuple[str | None, ...], tuple[str | None, ...]] = {}

    def windows(self, user: str, endpoint: str) -> tuple[tuple[str | None, ...], tuple[WindowSpec, ...]]:
        """The scopes and windows of a new budget."""
        scopes: list[str | None] = []
        specs: list[WindowSpec] = []
        base = f"{user}{SEP}{endpoint}{SEP}"
        per_user = self._limits.get(endpoint, ())
        learned = self._learned.setdefault(endpoint, {})
        if not any(w.window_seconds < DAY for w in per_user):
            scopes.append("window")  # nothing configured: learn it from the first answer
            specs.append(WindowSpec(base + "window", learned.get("window"), 900.0, False))
        trusted = endpoint in self._configured
        for i, limit in enumerate(per_user):
            scope = "user-24h" if limit.window_seconds >= DAY else "window"
            named = scope if scope not in scopes else None
            scopes.append(named)
            requests = learned.get(scope, limit.requests)
            specs.append(WindowSpec(base + (named or str(i)), requests, limit.window_seconds, trusted))
        for i, spec in enumerate(self.app_windows(endpoint)):
            scopes.append("app-24h" if i == 0 and spec.seconds >= DAY else None)
            specs.append(spec)
        # Budgets of an endpoint name the same scopes: one tuple serves them all.
        names = tuple(scopes)
        return self._scopes.setdefault(names, names), tuple(specs)

    def app_windows(self, endpoint: str) -> tuple[WindowSpec, ...]:
        shared = self._app.get(endpoint)
        if shared is None:
            guess = APP_PREFIX + endpoint not in self._configured
            shared = self._app[endpoint] = tuple(
                WindowSpec(f"{SEP}app{SEP}{endpoint}{SEP}{i}", a.requests, a.window_seconds, True, guess)
                for i, a in enumerate(self._limits.get(APP_PREFIX + endpoint, ()))
            )
        return shared

    def learn(self, endpoint: str, scope: str, limit: int | None) -> None:
        """X reported ``limit`` for a scope: new budgets of the endpoint start from it."""
        if limit:
            self._learned.setdefault(endpoint, {})[scope] = limit

    def adopt(self, user: str, endpoint: str, scope: str) -> tuple[WindowSpec, bool]:
        """A window for a scope X reported that a budget had none for (a 24-hour cap); true when it is
        app-wide, so every budget of the endpoint gains it."""
        if scope == "app-24h":
            spec = WindowSpec(f"{SEP}app{SEP}{endpoint}{SEP}{scope}", None, DAY)
            self._app[endpoint] = (*self.app_windows(endpoint), spec)
            return spec, True
        seconds = 900.0 if scope == "window" else DAY
        return WindowSpec(f"{user}{SEP}{endpoint}{SEP}{scope}", None, seconds), False

    @staticmethod
    def span(specs: Sequence[WindowLike]) -> float:
        """How long a budget's own windows last: after that, an idle budget holds nothing."""
        return max((s.seconds for s in specs if not s.key.startswith(SEP)), default=0.0)
