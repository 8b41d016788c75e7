"""``MemoryStore``: the windows' counts kept in this process, and the rules every store follows.

A window is fixed: N sends from the first one X sees, all N back at its reset. Before X has spoken of a
window (its limit a guess or unknown) and again right after each reset, one send goes at a time: its
answer anchors the window, and a server that reopens late costs one refused probe, not a burst.
``_redis/*.lua`` applies the same rules atomically in Redis; the contract tests hold both to them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._store import (
    BOUNDLESS,
    LATE_RETRY,
    SEP,
    UNLIMITED,
    Answer,
    OnAnswer,
    Skew,
    Taken,
    WindowLike,
    WindowView,
    low,
    unseen_view,
)

__all__ = ["MemoryStore"]


class _Window:
    """One fixed window's counts. ``used`` counts grants in the current window; ``low`` is the lowest
    remaining count X reported for it. Room is ``low - in_flight`` once X has spoken (our in-flight
    sends may not have reached it yet), else ``limit - used``, or one probe at a time while the limit
    is a guess, unknown, or the window has just reopened. ``reset`` is on X's clock.

    This class is a budget's own window (``MemoryStore.bind``): never a guess, never swept. ``_Kept``
    is one the store keeps by key.
    """

    __slots__ = ("in_flight", "key", "limit", "low", "reopened", "reset", "seconds", "trusted", "used")

    guess = False
    touched = 0.0

    def __init__(self, spec: WindowLike) -> None:
        self.key = spec.key
        self.limit = spec.limit
        self.seconds = spec.seconds
        self.trusted = spec.trusted
        self.used = 0
        self.in_flight = 0
        self.low: int | None = None
        self.reset: float | None = None
        self.reopened = False

    def room(self, now: float) -> int:
        if self.reset is not None and now >= self.reset:
            # A new window. Requests still in flight may land in it, so they count.
            self.used, self.low, self.reset, self.reopened = self.in_flight, None, None, True
        if self.limit == UNLIMITED:
            return BOUNDLESS
        if self.low is not None:
            return self.low - self.in_flight
        if self.probing():
            return 1 - self.in_flight
        assert self.limit is not None
        return self.limit - self.used

    def probing(self) -> bool:
        return self.low is None and (self.limit is None or not self.trusted or self.reopened)

    def reconcile(self, limit: int | None, remaining: int, reset: int, status: int, now: float) -> None:
        self.trusted = True
        if limit:
            self.limit = limit
        if reset <= now:
            if status == 429 and remaining == 0:
                if self.reset is not None and self.reset > now + LATE_RETRY:
                    self.low = 0  # a reset not credible (passed, or dropped): the one known stands
                else:
                    # Refused at a reset that has passed: X reopens late. Try again shortly, one probe.
                    self.low, self.reset, self.reopened = 0, now + LATE_RETRY, True
            return  # otherwise an answer from a window that has ended
        if self.reset is None or reset > self.reset + 0.5:
            self.low = remaining
        else:
            self.low = remaining if self.low is None else min(self.low, remaining)
        self.reset = reset
        self.reopened = False

    def idle(self, now: float) -> bool:
        if self.in_flight:
            return False
        if self.reset is not None:
            return now >= self.reset
        return not self.used or now >= self.touched + self.seconds

    def view(self, now: float, offset: float) -> WindowView:
        room = self.room(now)
        probing = self.limit != UNLIMITED and self.probing()
        if probing:  # what fits once the probe has answered: the known or documented limit
            room = BOUNDLESS if self.limit is None else self.limit - self.used
        reset = None if self.reset is None else self.reset - offset
        return WindowView(room, self.limit, reset, self.seconds, probing)


class _Kept(_Window):
    """A window the store keeps by key (app-wide ones, shared by every budget; any not bound): it may
    be a guess, and it is swept once idle since it was last asked for."""

    __slots__ = ("guess", "touched")

    def __init__(self, spec: WindowLike, now: float) -> None:
        super().__init__(spec)
        self.guess = spec.guess
        self.touched = now


class MemoryStore:
    """Windows kept in this process: the default store. Nothing here waits, so every call is atomic.

    Windows whose time is over are dropped as new ones arrive, so memory follows the active budgets.
    """

    synchronous = True

    def __init__(self) -> None:
        self._windows: dict[str, _Kept] = {}

    def __len__(self) -> int:
        return len(self._windows)

    def configure(self, *, flight_ttl: float) -> None:
        """Nothing to do: grants in this process end with it."""

    def bind(self, specs: Sequence[WindowLike], now: float) -> tuple[WindowLike, ...]:
        """The windows themselves, to hand back in place of ``specs``: a user's own windows are kept by
        their budget alone (no spec, no entry here), and an app-wide one is the one every budget shares.
        A budget that is dropped takes its own windows with it."""
        return tuple(
            self._get(spec, now) if spec.guess or spec.key.startswith(SEP) else _Window(spec)
            for spec in specs
        )

    def _get(self, spec: WindowLike, now: float) -> _Window:
        if spec.__class__ is _Window:
            return spec
        return self._kept(spec, now)

    def _kept(self, spec: WindowLike, now: float) -> _Kept:
        window = self._windows.get(spec.key)
        if window is None:
            window = self._windows[spec.key] = _Kept(spec, now)
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

    async def take(self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew) -> Taken:
        """Grant up to ``n`` sends that every window has room for (``take_now``, as a coroutine)."""
        return self.take_now(windows, n, now, skew)

    def take_now(self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew) -> Taken:
        """Grant up to ``n`` sends that every window has room for, counting them as in flight. When fewer
        are granted, say when room comes back (a window's reset) or which window's answer must come
        first (one probe is out and its answer anchors the window)."""
        x = now + low(skew)
        get = self._windows.get
        held: list[_Window] = []
        for spec in windows:
            if spec.__class__ is _Window:
                held.append(spec)
            else:  # kept here: the sweep drops it once idle since it was last asked for
                kept = get(spec.key) or self._kept(spec, x)
                kept.touched = x
                held.append(kept)
        granted = n
        for w in held:
            room = w.room(x)
            if room < granted:
                granted = max(room, 0)
        if granted:
            for w in held:
                w.used += granted
                w.in_flight += granted
            if granted == n:
                return _TAKEN[granted] if granted < len(_TAKEN) else Taken(granted)
        wake: float | None = None
        waiting_on: str | None = None
        for spec, w in zip(windows, held, strict=True):
            if w.room(x) > 0:
                continue
            if w.reset is None:
                if w.in_flight == 0 and w.limit not in (None, UNLIMITED) and not w.probing():
                    # Out of room with no answer to anchor the window: it surely ends a window from now.
                    w.reset = x + w.seconds
                else:
                    waiting_on = spec.key  # a probe is out: its answer tells
                    continue
            wake = w.reset if wake is None else max(wake, w.reset)
        local = None if wake is None else wake - low(skew)
        return Taken(granted, local, None if local is not None else waiting_on)

    async def settle(
        self,
        windows: Sequence[WindowLike],
        held: int,
        answer: Answer | None,
        now: float,
        skew: Skew,
        ticket: object = None,
    ) -> float | None:
        """Release one grant and reconcile with X's answer (``settle_now``, as a coroutine)."""
        return self.settle_now(windows, held, answer, now, skew)

    def settle_now(
        self, windows: Sequence[WindowLike], held: int, answer: Answer | None, now: float, skew: Skew
    ) -> float | None:
        """Release one grant and reconcile each window with what X's headers say of it (None: no answer
        came, so the send stays counted). For a 429, return when room comes back (local time)."""
        x = now + low(skew)
        if answer is None:  # sent, but no answer came: it may have reached X, so it stays counted
            for spec in windows[:held]:
                w = self._get(spec, x)
                w.in_flight = max(0, w.in_flight - 1)
            return None
        status = answer.status
        ok = status < 300
        resets: list[float] = [] if status == 429 else _NO_RESETS  # read only for a 429
        for i, spec in enumerate(windows):
            w = self._get(spec, x)
            if i < held:
                w.in_flight = max(0, w.in_flight - 1)
            elif not w.used:
                w.used = 1  # a window X just told us of: the send that brought the news counts
            reading = answer.readings[i] if i < len(answer.readings) else None
            if reading is not None:
                w.reconcile(reading[0], reading[1], reading[2], status, x)
                if reading[1] == 0 and w.reset is not None and status == 429:
                    resets.append(w.reset)
            elif ok and w.guess:
                assert isinstance(w, _Kept)
                # A documented app-wide cap that X's answers do not report does not apply to this app.
                w.guess, w.limit = False, UNLIMITED
            elif ok and not w.trusted:
                w.trusted = True  # X shows no count here: the configured limit, if any, rules
                if w.limit is None:
                    w.limit = UNLIMITED
            elif ok:
                w.reopened = False  # the probe after a reset went through
        if status != 429:
            return None
        if answer.retry_after is not None:
            for spec in windows:
                w = self._get(spec, x)
                if w.room(x) > 0 and w.limit not in (None, UNLIMITED):
                    w.low, w.reset = 0, x + answer.retry_after
                    break
            resets.append(x + answer.retry_after)
        later = [r for r in resets if r > x]
        return max(later) - low(skew) if later else None

    async def refund(
        self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew, ticket: object = None
    ) -> None:
        """Give back ``n`` grants that were never sent (``refund_now``, as a coroutine)."""
        self.refund_now(windows, n, now, skew)

    def refund_now(self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew) -> None:
        """Give back ``n`` grants that were never sent: they leave no trace in the windows."""
        x = now + low(skew)
        for spec in windows:
            w = self._get(spec, x)
            w.in_flight = max(0, w.in_flight - n)
            w.used = max(0, w.used - n)

    def view(self, windows: Sequence[WindowLike], now: float, skew: Skew) -> list[WindowView]:
        """The windows as they stand now (room, limit, reset), for estimates such as ``max_wait``'s."""
        offset = low(skew)
        x = now + offset
        out = []
        for spec in windows:
            w = spec if spec.__class__ is _Window else self._windows.get(spec.key)
            out.append(unseen_view(spec) if w is None else w.view(x, offset))
        return out

    def subscribe(self, on_answer: OnAnswer) -> None:
        """Nothing to do: in one process the scheduler sees every answer itself."""

    async def aclose(self) -> None:
        """Nothing to release."""


_TAKEN = tuple(Taken(i) for i in range(64))
_NO_RESETS: list[float] = []  # never appended to: only a 429 collects resets
