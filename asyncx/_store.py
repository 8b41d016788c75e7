"""Where budgets' windows live: the small interface the scheduler keeps its counts behind.

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

__all__ = ["Answer", "MemoryStore", "Store", "Taken", "WindowSpec", "WindowView"]

#: Bounds on X's clock minus the caller's, ``(low, high)``, or None while nothing is known.
Skew = tuple[float, float] | None
UNLIMITED = -1
#: A send still counted in flight this long after its grant was surely answered or lost.
FLIGHT_TTL = 120.0


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
    None with ``waiting_on`` naming the window whose first answer must come back first."""

    granted: int
    wake_at: float | None = None
    waiting_on: str | None = None
    ticket: object = None


class WindowView(NamedTuple):
    """A window as last seen: room now, its limit, its reset (local time, None if not anchored)."""

    room: int
    limit: int | None
    reset: float | None
    seconds: float


class Answer(NamedTuple):
    """X's answer to one send, as the store needs it.

    ``readings`` has one entry per window of the budget: ``(limit, remaining, reset)`` from the headers
    (reset on X's clock) or None. ``retry_after`` is seconds from a ``Retry-After`` header.
    """

    status: int
    readings: Sequence[tuple[int | None, int, int] | None]
    retry_after: float | None = None


@runtime_checkable
class Store(Protocol):
    """The counts behind every budget. Each call is atomic across everyone sharing the store.

    ``held`` is how many of ``windows`` (its first ones) the settled grant was counted in: a budget can
    gain windows between grant and answer when X reports a limit it did not know of.
    """

    async def take(self, windows: Sequence[WindowSpec], n: int, now: float, skew: Skew) -> Taken: ...

    async def settle(
        self,
        windows: Sequence[WindowSpec],
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
        self, windows: Sequence[WindowSpec], n: int, now: float, skew: Skew, ticket: object = None
    ) -> None:
        """Give back ``n`` grants that were never used: they leave no trace."""
        ...

    def view(self, windows: Sequence[WindowSpec], now: float, skew: Skew) -> list[WindowView]:
        """The windows as this process last saw them, without a round trip (for ETAs)."""
        ...

    def subscribe(self, on_answer: _OnAnswer) -> None:
        """Have ``on_answer(key)`` called when another process settles a send in an unanchored window,
        and ``on_answer(None)`` when such news may have been missed (every waiting budget asks again)."""
        ...

    async def aclose(self) -> None: ...


class _OnAnswer(Protocol):
    def __call__(self, key: str | None) -> None: ...


def _unseen_view(spec: WindowSpec) -> WindowView:
    """A window nothing is known of yet: its whole limit is room (one probe for a guessed one)."""
    room = spec.limit if spec.trusted and spec.limit is not None else 1
    return WindowView(1 << 30 if room == UNLIMITED else room, spec.limit, None, spec.seconds)


def _low(skew: Skew) -> float:
    """The offset waits use: waking a little late is cheap, waking early costs a 429."""
    return skew[0] if skew else 0.0


class _Window:
    """One fixed window's counts. ``used`` counts grants in the current window; ``low`` is the lowest
    remaining count X reported for it. Room is ``low - in_flight`` once X has spoken (our in-flight
    sends may not have reached it yet), else ``limit - used``. ``reset`` is on X's clock."""

    __slots__ = ("guess", "in_flight", "limit", "low", "reset", "seconds", "touched", "trusted", "used")

    def __init__(self, spec: WindowSpec, now: float) -> None:
        self.limit = spec.limit
        self.seconds = spec.seconds
        self.trusted = spec.trusted
        self.guess = spec.guess
        self.used = 0
        self.in_flight = 0
        self.low: int | None = None
        self.reset: float | None = None
        self.touched = now

    def room(self, now: float) -> int:
        if self.reset is not None and now >= self.reset:
            # A new window. Requests still in flight may land in it, so they count.
            self.used, self.low, self.reset = self.in_flight, None, None
        if self.limit == UNLIMITED:
            return 1 << 30
        if self.low is not None:
            return self.low - self.in_flight
        if self.limit is None or not self.trusted:
            return 1 - self.in_flight  # learning: one probe at a time
        return self.limit - self.used

    def reconcile(self, limit: int | None, remaining: int, reset: int, now: float) -> None:
        self.trusted = True
        if limit:
            self.limit = limit
        if reset <= now:
            return  # an answer from a window that has ended
        if self.reset is None or reset > self.reset + 0.5:
            self.low = remaining
        else:
            self.low = remaining if self.low is None else min(self.low, remaining)
        self.reset = reset

    def idle(self, now: float) -> bool:
        if self.in_flight:
            return False
        if self.reset is not None:
            return now >= self.reset
        return not self.used or now >= self.touched + self.seconds


class MemoryStore:
    """Windows kept in this process: the default store. Nothing here waits, so every call is atomic.

    Windows whose time is over are dropped as new ones arrive, so memory follows the active budgets.
    """

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}

    def __len__(self) -> int:
        return len(self._windows)

    def _get(self, spec: WindowSpec, now: float) -> _Window:
        window = self._windows.get(spec.key)
        if window is None:
            window = self._windows[spec.key] = _Window(spec, now)
            self._sweep(now)
        return window

    def _sweep(self, now: float) -> None:
        """Look at the two oldest windows: drop them if idle, else move them to the back."""
        windows = self._windows
        for _ in range(2):
            if len(windows) < 4:
                return
            key = next(iter(windows))
            window = windows.pop(key)
            if not window.idle(now):
                windows[key] = window

    async def take(self, windows: Sequence[WindowSpec], n: int, now: float, skew: Skew) -> Taken:
        return self.take_now(windows, n, now, skew)

    def take_now(self, windows: Sequence[WindowSpec], n: int, now: float, skew: Skew) -> Taken:
        """``take`` without the coroutine, for callers that know the store is local."""
        x = now + _low(skew)
        get = self._windows.get
        held = [get(spec.key) or self._get(spec, x) for spec in windows]
        granted = n
        for w in held:
            room = w.room(x)
            if room < granted:
                granted = max(room, 0)
        if granted:
            for w in held:
                w.used += granted
                w.in_flight += granted
                w.touched = x
            if granted == n:
                return _TAKEN[granted] if granted < len(_TAKEN) else Taken(granted)
        wake: float | None = None
        waiting_on: str | None = None
        for spec, w in zip(windows, held, strict=True):
            if w.room(x) > 0:
                continue
            if w.reset is None:
                if w.in_flight == 0 and w.limit not in (None, UNLIMITED):
                    # Out of room with no answer to anchor the window: it surely ends a window from now.
                    w.reset = x + w.seconds
                else:
                    waiting_on = spec.key
                    continue
            wake = w.reset if wake is None else max(wake, w.reset)
        local = None if wake is None else wake - _low(skew)
        return Taken(granted, local, None if local is not None else waiting_on)

    async def settle(
        self,
        windows: Sequence[WindowSpec],
        held: int,
        answer: Answer | None,
        now: float,
        skew: Skew,
        ticket: object = None,
    ) -> float | None:
        return self.settle_now(windows, held, answer, now, skew)

    def settle_now(
        self,
        windows: Sequence[WindowSpec],
        held: int,
        answer: Answer | None,
        now: float,
        skew: Skew,
    ) -> float | None:
        """``settle`` without the coroutine."""
        x = now + _low(skew)
        if answer is None:  # sent, but no answer came: it may have reached X, so it stays counted
            for spec in windows[:held]:
                w = self._get(spec, x)
                w.in_flight = max(0, w.in_flight - 1)
            return None
        ok = answer.status < 300
        resets: list[float] = []
        get = self._windows.get
        for i, spec in enumerate(windows):
            w = get(spec.key) or self._get(spec, x)
            if i < held:
                w.in_flight = max(0, w.in_flight - 1)
            elif not w.used:
                w.used = 1  # a window X just told us of: the send that brought the news counts
            reading = answer.readings[i] if i < len(answer.readings) else None
            if reading is not None:
                w.reconcile(reading[0], reading[1], reading[2], x)
                if reading[1] == 0 and w.reset is not None:
                    resets.append(w.reset)
            elif ok and w.guess:
                # A documented app-wide cap that X's answers do not report does not apply to this app.
                w.guess, w.limit = False, UNLIMITED
            elif ok and not w.trusted:
                w.trusted = True  # X shows no count here: the configured limit, if any, rules
                if w.limit is None:
                    w.limit = UNLIMITED
        if answer.status != 429:
            return None
        if answer.retry_after is not None:
            for spec in windows:
                w = self._get(spec, x)
                if w.room(x) > 0 and w.limit not in (None, UNLIMITED):
                    w.low, w.reset = 0, x + answer.retry_after
                    break
            resets.append(x + answer.retry_after)
        later = [r for r in resets if r > x]
        return max(later) - _low(skew) if later else None

    async def refund(
        self, windows: Sequence[WindowSpec], n: int, now: float, skew: Skew, ticket: object = None
    ) -> None:
        self.refund_now(windows, n, now, skew)

    def refund_now(self, windows: Sequence[WindowSpec], n: int, now: float, skew: Skew) -> None:
        """``refund`` without the coroutine."""
        x = now + _low(skew)
        for spec in windows:
            w = self._get(spec, x)
            w.in_flight = max(0, w.in_flight - n)
            w.used = max(0, w.used - n)

    def view(self, windows: Sequence[WindowSpec], now: float, skew: Skew) -> list[WindowView]:
        x = now + _low(skew)
        out = []
        for spec in windows:
            w = self._windows.get(spec.key)
            if w is None:
                out.append(_unseen_view(spec))
                continue
            room = w.room(x)
            reset = None if w.reset is None else w.reset - _low(skew)
            out.append(WindowView(room, w.limit, reset, w.seconds))
        return out

    def subscribe(self, on_answer: _OnAnswer) -> None:
        """Nothing to do: in one process the scheduler sees every answer itself."""

    async def aclose(self) -> None:
        """Nothing to release."""


_TAKEN = tuple(Taken(i) for i in range(64))
