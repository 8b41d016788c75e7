"""Rate-limit scheduling: every single send happens inside ``async with scheduler.acquire(...)``.

X's windows are fixed and anchored on the server: a window allows N requests from the first one the
server sees, and all N come back at its reset. The scheduler models each window, not a refilling
bucket, and reconciles it with every response's headers, read against the server's clock:

* a budget is one user's use of one endpoint; it holds that user's windows and shares the app's;
* calls for one budget are granted in FIFO order; a global ``max_in_flight`` is shared round-robin
  between budgets, so a user with a long backlog never delays another user's first call;
* with nothing known, one request goes out and its answer teaches the limit;
* a budget out of room parks on one timer heap until its reset, then releases exactly as many waiters
  as the window allows;
* waiting costs a future per waiting call and nothing else: no polling.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType

import attrs

from ._errors import RateLimited
from ._headers import LimitReading, read_limits, retry_after, server_date
from ._limits import APP_PREFIX, resolve_limits
from ._models import RateLimit
from ._transport import Response

__all__ = ["BudgetStats", "Permit", "Scheduler", "ServerClock"]

log = logging.getLogger("asyncx.scheduler")

_DAY = 86_400.0
#: How well (seconds) the server's clock is worth knowing; past this, probing stops.
_CLOCK_PRECISION = 0.05
_UNLIMITED = -1
_NO_READINGS: dict[str, LimitReading] = {}


@attrs.frozen
class BudgetStats:
    """Counters for one budget (or a total): sends made, seconds spent waiting, 429s, max_wait refusals."""

    sent: int = 0
    waited_seconds: float = 0.0
    rate_limited: int = 0
    rejected: int = 0


class ServerClock:
    """Bounds on the server's clock minus ours, narrowed by every response.

    ``Date`` is whole seconds, so one response says only that the server's clock, when it answered,
    was in ``[date, date + 1)`` while ours was in ``[sent, received]``. Many responses narrow that.
    Waits use the lower bound: waking a little late is cheap, waking early costs a 429.
    """

    __slots__ = ("high", "low")

    def __init__(self) -> None:
        self.low = -math.inf
        self.high = math.inf

    def observe(self, date: float, sent: float, received: float) -> None:
        low, high = date - received, date + 1.0 - sent
        if low > self.high or high < self.low:  # a clock jumped: start again from this response
            self.low, self.high = low, high
        else:
            self.low, self.high = max(self.low, low), min(self.high, high)

    def to_local(self, server_time: float) -> float:
        """The earliest local time at which the server's clock surely reads ``server_time``."""
        return server_time - self.low if self.low != -math.inf else server_time


class _Window:
    """One fixed window as this process sees it.

    ``used`` counts grants in the current window; ``low`` is the lowest remaining count the server
    reported for it. Room is ``low - in_flight`` once the server has spoken (our in-flight requests may
    not have reached it yet), else ``limit - used``. ``reset`` is local time, None until anchored.
    """

    __slots__ = (
        "blocked",
        "guess",
        "in_flight",
        "limit",
        "low",
        "reset",
        "seconds",
        "server_reset",
        "shared",
        "trusted",
        "used",
    )

    def __init__(self, limit: int | None, seconds: float, shared: bool = False, trusted: bool = True) -> None:
        self.shared = shared  # an app-wide window, held by every budget of its endpoint
        self.trusted = trusted  # False: a guessed limit, so probe with one request until X answers
        self.guess = False  # a documented app-wide cap, dropped if X's answers do not report it
        self.limit = limit
        self.seconds = seconds
        self.used = 0
        self.in_flight = 0
        self.low: int | None = None
        self.reset: float | None = None
        self.server_reset: int | None = (
            None  # the reset as X said it, to re-read when the clock is better known
        )
        self.blocked: list[_Budget] | None = None

    def room(self, now: float) -> int:
        if self.reset is not None and now >= self.reset:
            # A new window. Requests still in flight may land in it, so they count.
            self.used, self.low, self.reset, self.server_reset = self.in_flight, None, None, None
        if self.limit == _UNLIMITED:
            return 1 << 30
        if self.low is not None:
            return self.low - self.in_flight
        if self.limit is None or not self.trusted:
            return 1 - self.in_flight  # learning: one probe at a time
        return self.limit - self.used

    def reconcile(self, reading: LimitReading, reset: float, now: float) -> None:
        self.trusted = True
        if reading.limit:
            self.limit = reading.limit
        if reset <= now:
            return  # an answer from a window that has ended
        if self.reset is None or reset > self.reset + 0.5:
            self.low = reading.remaining
        else:
            self.low = reading.remaining if self.low is None else min(self.low, reading.remaining)
        self.reset = reset
        self.server_reset = reading.reset


class _Budget:
    """One user's use of one endpoint: its FIFO of waiting calls, its windows and its counters."""

    __slots__ = (
        "endpoint",
        "in_ready",
        "rate_limited",
        "rejected",
        "scopes",
        "sent",
        "touched",
        "user",
        "waited",
        "waiters",
        "wake_at",
        "windows",
    )

    def __init__(
        self, user: str, endpoint: str, scopes: tuple[str | None, ...], windows: tuple[_Window, ...]
    ) -> None:
        self.user = user
        self.endpoint = endpoint
        self.scopes = scopes
        self.windows = windows
        self.waiters: deque[asyncio.Future[Permit]] | None = None
        self.wake_at: float | None = None
        self.in_ready = False
        self.touched = 0.0
        self.sent = 0
        self.waited = 0.0
        self.rate_limited = 0
        self.rejected = 0


class Permit:
    """The right to make one send. ``settle(response)`` hands the scheduler X's answer.

    After a 429 whose headers name a reset, ``parked`` is true: the budget waits for that reset and
    the call should be queued again. ``retry_at`` is when budget is expected back (local time).
    """

    __slots__ = ("_budget", "_scheduler", "_windows", "granted_at", "parked", "retry_at", "settled")

    def __init__(self, scheduler: Scheduler, budget: _Budget, granted_at: float) -> None:
        self._scheduler = scheduler
        self._budget = budget
        self._windows = budget.windows
        self.granted_at = granted_at
        self.settled = False
        self.parked = False
        self.retry_at: float | None = None

    def settle(self, response: Response) -> None:
        if not self.settled:
            self.settled = True
            self._scheduler._finish(self, response)


class _Acquire:
    """``async with scheduler.acquire(...) as permit``: waits for room, then always releases it."""

    __slots__ = ("_budget", "_max_wait", "_permit", "_scheduler")

    def __init__(self, scheduler: Scheduler, budget: _Budget, max_wait: float | None) -> None:
        self._scheduler = scheduler
        self._budget = budget
        self._max_wait = max_wait
        self._permit: Permit | None = None

    async def __aenter__(self) -> Permit:
        self._permit = self._scheduler._try_now(self._budget)
        if self._permit is None:
            self._permit = await self._scheduler._wait(self._budget, self._max_wait)
        return self._permit

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        permit = self._permit
        if permit is not None and not permit.settled:
            permit.settled = True
            self._scheduler._finish(permit, None)


class Scheduler:
    """Grants permits per (user, endpoint) budget so that no send exceeds a window X enforces.

    ``limits`` maps endpoint names to per-user windows and ``app:<endpoint>`` to app-wide ones
    (defaults from X's documentation). ``clock`` and ``sleep`` are injectable so tests run on a fake
    clock. ``max_in_flight`` bounds open requests across all budgets.
    """

    def __init__(
        self,
        limits: Mapping[str, RateLimit | Sequence[RateLimit]] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_in_flight: int = 256,
        reset_margin: float = 0.05,
        clock_probe: Callable[[], Awaitable[Mapping[str, str]]] | None = None,
    ) -> None:
        self._limits = resolve_limits(limits)
        self._configured = frozenset(limits or ())
        self._clock = clock
        self._sleep = sleep
        self.max_in_flight = max_in_flight
        self.reset_margin = reset_margin
        self.server_clock = ServerClock()
        self._budgets: dict[tuple[str, str], _Budget] = {}
        self._app_windows: dict[str, tuple[_Window, ...]] = {}
        self._learned: dict[tuple[str, str], int] = {}  # (endpoint, scope) -> limit the server reported
        self._totals: dict[str, list[float]] = {}
        self._in_flight = 0
        self._waiting = 0
        self._ready: deque[_Budget] = deque()
        self._heap: list[tuple[float, int, _Budget]] = []
        self._seq = itertools.count()
        self._timer: asyncio.Task[None] | None = None
        self._timer_at: float | None = None
        self._probe = clock_probe
        self._refiner: asyncio.Task[None] | None = None

    # -- public ----------------------------------------------------------------------------------

    def acquire(self, user: str, endpoint: str, *, max_wait: float | None = None) -> _Acquire:
        """Wait for room to send once as ``user`` to ``endpoint``; raise ``RateLimited`` past ``max_wait``."""
        return _Acquire(self, self._budget(user, endpoint), max_wait)

    def now(self) -> float:
        """The scheduler's clock (local epoch seconds), on which ``eta`` and resets are given."""
        return self._clock()

    @property
    def in_flight(self) -> int:
        """Sends granted and not yet answered."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Calls waiting for budget or for an in-flight slot."""
        return self._waiting

    def __len__(self) -> int:
        """Budgets held in memory (idle ones expire)."""
        return len(self._budgets)

    def stats(self, user: str | None = None, endpoint: str | None = None) -> BudgetStats:
        """Counters for one budget, or totals over all budgets matching the given user and/or endpoint."""
        if user is not None and endpoint is not None:
            b = self._budgets.get((user, endpoint))
            if b is None:
                return BudgetStats()
            return BudgetStats(b.sent, b.waited, b.rate_limited, b.rejected)
        if user is not None:
            parts = [self.stats(user, e) for (u, e) in list(self._budgets) if u == user]
            return BudgetStats(
                sum(p.sent for p in parts),
                sum(p.waited_seconds for p in parts),
                sum(p.rate_limited for p in parts),
                sum(p.rejected for p in parts),
            )
        totals = [t for e, t in self._totals.items() if endpoint is None or e == endpoint]
        return BudgetStats(
            int(sum(t[0] for t in totals)),
            sum(t[1] for t in totals),
            int(sum(t[2] for t in totals)),
            int(sum(t[3] for t in totals)),
        )

    def eta(self, user: str, endpoint: str, calls: int) -> float | None:
        """When ``calls`` more calls of a budget (its queue included) could all be sent, by the windows
        known now (local time); None for a budget not seen yet."""
        b = self._budgets.get((user, endpoint))
        if b is None or calls <= 0:
            return None
        queued = sum(1 for f in b.waiters if not f.done()) if b.waiters else 0
        return self._eta(b, self._clock(), max(queued, calls) - 1)

    async def aclose(self) -> None:
        for task in (self._timer, self._refiner):
            if task is not None:
                task.cancel()
        self._timer = self._refiner = None

    # -- budgets ---------------------------------------------------------------------------------

    def _budget(self, user: str, endpoint: str) -> _Budget:
        key = (user, endpoint)
        budget = self._budgets.pop(key, None)
        if budget is None:
            budget = self._new_budget(user, endpoint)
            self._expire()
        self._budgets[key] = budget  # most recently used last, so idle budgets gather at the front
        return budget

    def _new_budget(self, user: str, endpoint: str) -> _Budget:
        scopes: list[str | None] = []
        windows: list[_Window] = []
        per_user = self._limits.get(endpoint, ())
        if not any(w.window_seconds < _DAY for w in per_user):
            scopes.append("window")  # nothing configured: learn it from the first answer
            windows.append(_Window(self._learned.get((endpoint, "window")), 900.0, trusted=False))
        # A documented default is a guess until X answers (so: one probe); what the caller set is not.
        trusted = endpoint in self._configured
        for limit in per_user:
            scope = "user-24h" if limit.window_seconds >= _DAY else "window"
            scopes.append(scope if scope not in scopes else None)
            learned = self._learned.get((endpoint, scope), limit.requests)
            windows.append(_Window(learned, limit.window_seconds, trusted=trusted))
        shared = self._app_windows.get(endpoint)
        if shared is None:
            app = self._limits.get(APP_PREFIX + endpoint, ())
            shared = self._app_windows[endpoint] = tuple(
                _Window(a.requests, a.window_seconds, shared=True) for a in app
            )
            for window in shared:
                window.guess = APP_PREFIX + endpoint not in self._configured
        for i, window in enumerate(shared):
            scopes.append("app-24h" if i == 0 and window.seconds >= _DAY else None)
            windows.append(window)
        budget = _Budget(user, endpoint, tuple(scopes), tuple(windows))
        budget.touched = self._clock()
        self._totals.setdefault(endpoint, [0, 0.0, 0, 0])
        return budget

    def _expire(self) -> None:
        """Drop up to two idle budgets whose windows have all ended: they hold nothing worth keeping."""
        now = self._clock()
        for _ in range(2):
            if len(self._budgets) < 2:
                return
            key = next(iter(self._budgets))
            b = self._budgets[key]
            if (b.waiters and any(not f.done() for f in b.waiters)) or b.wake_at is not None or b.in_ready:
                return
            for w in b.windows:
                if w.shared:
                    continue
                if (
                    w.in_flight
                    or (w.reset is not None and now < w.reset)
                    or (w.reset is None and w.used and now < b.touched + w.seconds)
                ):
                    return
            del self._budgets[key]

    # -- granting --------------------------------------------------------------------------------

    def _blocker(self, budget: _Budget, now: float) -> _Window | None:
        for w in budget.windows:
            if w.room(now) <= 0:
                return w
        return None

    def _grant(self, budget: _Budget, now: float) -> Permit:
        for w in budget.windows:
            w.used += 1
            w.in_flight += 1
        self._in_flight += 1
        budget.touched = now
        return Permit(self, budget, now)

    def _try_now(self, budget: _Budget) -> Permit | None:
        """The fast path: grant at once when nobody is ahead and every window has room."""
        if (budget.waiters and any(not f.done() for f in budget.waiters)) or self._ready:
            return None
        if self._in_flight >= self.max_in_flight:
            return None
        now = self._clock()
        if self._blocker(budget, now) is not None:
            return None
        return self._grant(budget, now)

    def _eta(self, budget: _Budget, now: float, position: int) -> float:
        """When the call at ``position`` in the budget's queue should be sent, by the known windows."""
        eta = now
        for w in budget.windows:
            room = max(0, w.room(now))
            if position < room:
                continue
            per_window = w.limit if w.limit and w.limit > 0 else 1
            later = (position - room) // per_window
            start = w.reset if w.reset is not None else now + w.seconds
            eta = max(eta, start + self.reset_margin + later * w.seconds)
        return eta

    async def _wait(self, budget: _Budget, max_wait: float | None) -> Permit:
        now = self._clock()
        if budget.waiters is None:
            budget.waiters = deque()
        position = sum(1 for f in budget.waiters if not f.done())
        if max_wait is not None:
            eta = self._eta(budget, now, position)
            if eta - now > max_wait:
                budget.rejected += 1
                self._totals[budget.endpoint][3] += 1
                raise RateLimited(
                    429,
                    retry_at=eta,
                    message=f"{budget.endpoint}: would wait {eta - now:.1f}s (max_wait {max_wait}s)",
                )
        future: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        budget.waiters.append(future)
        self._pump(budget)
        if not future.done():
            log.debug(
                "waiting for %s budget of user %s (%d queued)", budget.endpoint, budget.user, position + 1
            )
        self._waiting += 1
        try:
            permit = await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._refund(future.result())  # granted just as it was cancelled: give the room back
            raise
        finally:
            self._waiting -= 1
        waited = permit.granted_at - now
        budget.waited += waited
        self._totals[budget.endpoint][1] += waited
        return permit

    def _pump(self, budget: _Budget, most: int = 1 << 30) -> None:
        """Grant the budget's waiters in FIFO order while its windows and the in-flight bound allow."""
        waiters = budget.waiters
        if not waiters:
            return
        now = self._clock()
        while waiters:
            future = waiters[0]
            if future.done():
                waiters.popleft()
                continue
            blocker = self._blocker(budget, now)
            if blocker is not None:
                self._park(budget, blocker, now)
                return
            if self._in_flight >= self.max_in_flight or most <= 0:
                if not budget.in_ready:
                    budget.in_ready = True
                    self._ready.append(budget)
                return
            waiters.popleft()
            future.set_result(self._grant(budget, now))
            most -= 1

    def _park(self, budget: _Budget, window: _Window, now: float) -> None:
        if window.reset is None:
            if window.in_flight == 0 and window.limit not in (None, _UNLIMITED):
                # Out of room with no answer to anchor the window: it surely ends a window from now.
                window.reset = now + window.seconds
            else:
                if window.blocked is None:
                    window.blocked = []
                if budget not in window.blocked:
                    window.blocked.append(budget)
                return
        deadline = window.reset + self.reset_margin
        if budget.wake_at is not None and budget.wake_at <= deadline:
            return
        budget.wake_at = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), budget))
        if self._timer_at is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = asyncio.get_running_loop().create_task(self._run_timer())
        clock = self.server_clock
        if (
            self._probe is not None
            and self._refiner is None
            and clock.low != -math.inf
            and clock.high - clock.low > _CLOCK_PRECISION
            and deadline - now > 1.5
        ):
            self._refiner = asyncio.get_running_loop().create_task(self._refine_clock())

    async def _refine_clock(self) -> None:
        """While budgets wait, pin down the server's clock with a few unauthenticated probes.

        ``Date`` has whole seconds, and a burst of answers often shows one phase of it, leaving the
        clock known to within a second: a wake-up up to a second late at every reset. Each probe is
        timed for the moment the server's second would tick if the offset were the middle of what we
        know, so its ``Date`` halves the doubt, as htpdate does.
        """
        clock = self.server_clock
        assert self._probe is not None
        try:
            for _ in range(12):
                width = clock.high - clock.low
                if width <= _CLOCK_PRECISION:
                    break
                now = self._clock()
                middle = (clock.low + clock.high) / 2
                target = math.ceil(now + 0.02 + middle) - middle
                if not self._heap or self._heap[0][0] - target < 0.5:
                    break  # nobody waits long enough to gain from it
                await self._sleep(target - now)
                sent = self._clock()
                headers = await self._probe()
                date = server_date(headers)
                if date is None:
                    break
                clock.observe(date, sent, self._clock())
                if clock.high - clock.low > 0.75 * width:
                    break  # the round trip is too long to learn more
            self._rewake()
        except Exception as exc:  # a failed probe only leaves the estimate as it was
            log.debug("clock probe failed: %s", exc.__class__.__name__)
        finally:
            if self._refiner is asyncio.current_task():
                self._refiner = None

    def _rewake(self) -> None:
        """Re-read parked budgets' resets with the better clock estimate, waking them earlier if due."""
        now = self._clock()
        for _, _, budget in list(self._heap):
            if budget.wake_at is None:
                continue
            for w in budget.windows:
                if w.server_reset is not None and w.reset is not None:
                    w.reset = self.server_clock.to_local(w.server_reset)
            blocker = self._blocker(budget, now)
            if blocker is None:
                budget.wake_at = None
                self._pump(budget)
            elif blocker.reset is not None and blocker.reset + self.reset_margin < budget.wake_at:
                budget.wake_at = None
                self._park(budget, blocker, now)

    async def _run_timer(self) -> None:
        heap = self._heap
        try:
            while heap:
                deadline = heap[0][0]
                delay = deadline - self._clock()
                if delay > 0:
                    self._timer_at = deadline
                    await self._sleep(delay)
                    continue
                _, _, budget = heapq.heappop(heap)
                if budget.wake_at != deadline:
                    continue  # superseded by an earlier wake-up
                budget.wake_at = None
                self._pump(budget)
        finally:
            if self._timer is asyncio.current_task():
                self._timer, self._timer_at = None, None

    # -- answers ---------------------------------------------------------------------------------

    def _finish(self, permit: Permit, response: Response | None) -> None:
        """Release a permit's room; with a response, reconcile its windows with the headers."""
        budget = permit._budget
        now = self._clock()
        for w in permit._windows:
            w.in_flight -= 1
        readings: dict[str, LimitReading] = _NO_READINGS
        if response is not None:
            headers = response.headers
            readings = read_limits(headers)
            date = server_date(headers)
            if date is not None:
                self.server_clock.observe(date, permit.granted_at, now)
            self._reconcile(budget, readings, response.status < 300, now)
        self._in_flight -= 1
        budget.sent += 1
        self._totals[budget.endpoint][0] += 1
        if response is not None and response.status == 429:
            self._on_429(permit, response, readings, now)
        self._slot_freed(budget)

    def _reconcile(self, budget: _Budget, readings: dict[str, LimitReading], ok: bool, now: float) -> None:
        for named in readings:
            if named not in budget.scopes:
                self._adopt(budget, named)
        for scope, w in zip(budget.scopes, budget.windows, strict=True):
            reading = readings.get(scope) if scope else None
            if reading is not None:
                w.reconcile(reading, self.server_clock.to_local(reading.reset), now)
                if w.limit and w.limit > 0 and scope:
                    self._learned[(budget.endpoint, scope)] = w.limit
            elif ok and w.guess:
                # A documented app-wide cap that X's answers do not report does not apply to this app.
                w.guess, w.limit = False, _UNLIMITED
            elif ok and not w.trusted:
                w.trusted = True  # the server shows no count here: the configured limit, if any, rules
                if w.limit is None:
                    w.limit = _UNLIMITED
            if w.blocked:
                blocked, w.blocked = w.blocked, None
                for other in blocked:
                    if other is not budget:
                        self._pump(other)

    def _on_429(
        self, permit: Permit, response: Response, readings: Mapping[str, LimitReading], now: float
    ) -> None:
        budget = permit._budget
        budget.rate_limited += 1
        self._totals[budget.endpoint][2] += 1
        after = retry_after(response.headers)
        resets = [
            w.reset
            for s, w in zip(budget.scopes, budget.windows, strict=True)
            if s is not None and s in readings and readings[s].remaining == 0
        ]
        if after is not None:
            for w in budget.windows:
                if w.room(now) > 0 and w.limit not in (None, _UNLIMITED):
                    w.low, w.reset = 0, now + after
                    break
            resets.append(now + after)
        known = [r for r in resets if r is not None and r > now]
        if known:
            permit.parked = True
            permit.retry_at = max(known) + self.reset_margin
        log.warning(
            "429 for %s of user %s; budget parked until %s",
            budget.endpoint,
            budget.user,
            f"{permit.retry_at - now:.1f}s from now" if permit.retry_at else "unknown",
        )

    def _adopt(self, budget: _Budget, scope: str) -> None:
        """A response names a limit this budget had no window for (a 24-hour cap): track it from now on."""
        window = _Window(None, 900.0 if scope == "window" else _DAY, shared=scope == "app-24h")
        window.used = 1  # the request that brought the news
        targets = [budget]
        if scope == "app-24h":
            self._app_windows[budget.endpoint] = (*self._app_windows.get(budget.endpoint, ()), window)
            targets += [
                b for b in self._budgets.values() if b.endpoint == budget.endpoint and b is not budget
            ]
        for b in targets:
            b.scopes, b.windows = (*b.scopes, scope), (*b.windows, window)

    def _refund(self, permit: Permit) -> None:
        """Undo a grant that was never used (its caller was cancelled first)."""
        budget = permit._budget
        permit.settled = True
        for w in permit._windows:
            w.used -= 1
            w.in_flight -= 1
        self._in_flight -= 1
        self._slot_freed(budget)

    def _slot_freed(self, budget: _Budget) -> None:
        """An in-flight slot and the budget's room came back: the next budget in the ring goes first."""
        if self._ready:
            nxt = self._ready.popleft()
            nxt.in_ready = False
            self._pump(nxt, most=1)
        if budget.waiters:
            self._pump(budget)
