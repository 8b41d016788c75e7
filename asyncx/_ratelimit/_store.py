"""The store interface: where budgets' windows live, and the small types that cross it.

The scheduler owns what is local to a process (queues, fairness, timers); a ``Store`` owns the counts
that decide whether a send may go: per window, how many were granted, how many are in flight, what X
last said was remaining, and when the window resets. ``MemoryStore`` keeps them in this process;
``RedisStore`` shares them between processes with the same rules.

Times: a store keeps resets on X's clock (the epoch seconds X's headers speak in). Callers give their
local time and ``skew``, the bounds on X's clock minus theirs (None while unknown), and get local times
back, so every process reads the same stored reset on its own clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import attrs

__all__ = ["Answer", "Skew", "Store", "Taken", "WindowLike", "WindowSpec", "WindowView"]

#: Bounds on X's clock minus the caller's, ``(low, high)``, or None while nothing is known.
Skew = tuple[float, float] | None
#: A window's limit when it has none.
UNLIMITED = -1
#: Room reported for an unlimited window.
BOUNDLESS = 1 << 30
#: Joins user, endpoint and scope into a window's key; a leading one marks an app-wide window.
SEP = "\x1f"
#: How long a window that reopened late (a 429 at its advertised reset) waits before its next probe.
LATE_RETRY = 1.0


class WindowLike(Protocol):
    """What a store reads of a window it is handed: a ``WindowSpec``, or a store's own window object
    standing in for one (``MemoryStore.bind``)."""

    @property
    def key(self) -> str:
        """The window's name in the store (the user's, or an app-wide one's)."""
        ...

    @property
    def limit(self) -> int | None:
        """Sends per window: None while it is to be learned from X's first answer, -1 for none."""
        ...

    @property
    def seconds(self) -> float:
        """How long the window lasts."""
        ...

    @property
    def trusted(self) -> bool:
        """False for a documented default, probed with one request until X answers."""
        ...

    @property
    def guess(self) -> bool:
        """True for an app-wide cap that is dropped if X's answers do not report it."""
        ...


@attrs.frozen(slots=True)
class WindowSpec:
    """One window a budget must have room in, and what to assume of it before anything is stored.

    ``key`` names the window in the store (a user's windows are theirs; an app-wide one is shared by
    every user of the endpoint). ``limit`` is None to learn it from the first answer, -1 for none;
    ``trusted`` is False for a documented default, which is probed with one request until X answers;
    ``guess`` marks an app-wide cap that is dropped if X's answers do not report it.
    """

    key: str
    limit: int | None
    seconds: float
    trusted: bool = True
    guess: bool = False


class Taken(NamedTuple):
    """What ``take`` granted. When fewer than asked: ``wake_at`` is when to ask again (local time), or
    None with ``waiting_on`` naming the window whose next answer must come back first."""

    granted: int
    wake_at: float | None = None
    waiting_on: str | None = None
    ticket: object = None


class WindowView(NamedTuple):
    """A window as last seen: room now, its limit, its reset (local time, None if not anchored), and
    ``probing`` while a guessed or reopened window sends one request at a time until X answers."""

    room: int
    limit: int | None
    reset: float | None
    seconds: float
    probing: bool = False


class Answer(NamedTuple):
    """X's answer to one send, as the store needs it.

    ``readings`` has one entry per window of the budget: ``(limit, remaining, reset)`` from the headers
    (reset on X's clock) or None. ``retry_after`` is seconds from a ``Retry-After`` header.
    """

    status: int
    readings: Sequence[tuple[int | None, int, int] | None]
    retry_after: float | None = None


class OnAnswer(Protocol):
    def __call__(self, key: str | None) -> None: ...


@runtime_checkable
class Store(Protocol):
    """The counts behind every budget. Each call is atomic across everyone sharing the store.

    ``held`` is how many of ``windows`` (its first ones) the settled grant was counted in: a budget can
    gain windows between grant and answer when X reports a limit it did not know of.

    A store whose answers need no waiting says so with ``synchronous``; the scheduler then calls the
    ``*_now`` twins, which make no coroutine. Other stores may leave those unimplemented.
    """

    #: True when ``take_now``, ``settle_now`` and ``refund_now`` answer at once.
    synchronous: bool

    def configure(self, *, flight_ttl: float) -> None:
        """``flight_ttl``: seconds after which a grant never settled (its process died) stops counting as
        in flight. The scheduler sets it to the longest a request can take."""
        ...

    async def take(self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew) -> Taken:
        """Grant up to ``n`` sends that every window has room for."""
        ...

    async def settle(
        self,
        windows: Sequence[WindowLike],
        held: int,
        answer: Answer | None,
        now: float,
        skew: Skew,
        ticket: object = None,
    ) -> float | None:
        """Release one grant, reconciling with X's answer (None: no answer came, so the send still
        counts); for a 429, return when room comes back (local time)."""
        ...

    async def refund(
        self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew, ticket: object = None
    ) -> None:
        """Give back ``n`` grants that were never used: they leave no trace."""
        ...

    def take_now(self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew) -> Taken:
        """``take`` without a coroutine (``synchronous`` stores only)."""
        ...

    def settle_now(
        self, windows: Sequence[WindowLike], held: int, answer: Answer | None, now: float, skew: Skew
    ) -> float | None:
        """``settle`` without a coroutine (``synchronous`` stores only)."""
        ...

    def refund_now(self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew) -> None:
        """``refund`` without a coroutine (``synchronous`` stores only)."""
        ...

    def view(self, windows: Sequence[WindowLike], now: float, skew: Skew) -> list[WindowView]:
        """The windows as this process last saw them, without a round trip (for ETAs)."""
        ...

    def subscribe(self, on_answer: OnAnswer) -> None:
        """Have ``on_answer(key)`` called when another process settles a send in an unanchored window,
        and ``on_answer(None)`` when such news may have been missed (every waiting budget asks again)."""
        ...

    async def aclose(self) -> None:
        """Release the store's connections; the client that was given the store calls it."""
        ...


def unseen_view(spec: WindowLike) -> WindowView:
    """A window nothing is known of yet: its whole limit is room (unbounded while the limit is unknown,
    as a seen window that is still probing counts it), probed one request at a time while the limit is
    a guess or unknown."""
    if spec.limit == UNLIMITED:
        return WindowView(BOUNDLESS, spec.limit, None, spec.seconds)
    if spec.limit is None:
        return WindowView(BOUNDLESS, None, None, spec.seconds, True)
    return WindowView(spec.limit, spec.limit, None, spec.seconds, not spec.trusted)


def low(skew: Skew) -> float:
    """The offset waits use: waking a little late is cheap, waking early costs a 429."""
    return skew[0] if skew else 0.0
