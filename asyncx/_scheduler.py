"""Rate-limit scheduling: every single send happens inside ``async with scheduler.acquire(...)``.

X's windows are fixed and anchored on the server: a window allows N requests from the first one the
server sees, and all N come back at its reset. The scheduler models each window, not a refilling
bucket, and reconciles it with every response's headers, read against the server's clock:

* a budget is one user's use of one endpoint; it needs room in that user's windows and the app's,
  whose counts live in a ``Store`` (in this process by default, or shared through Redis);
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
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any

import attrs

from ._errors import RateLimited, StoreUnavailable, XError
from ._headers import HORIZON, LimitReading, ServerAnswer, server_date
from ._limits import APP_PREFIX, resolve_limits
from ._models import RateLimit
from ._store import Answer, MemoryStore, Store, Taken, WindowSpec

__all__ = ["BudgetStats", "Permit", "Scheduler", "ServerClock"]

log = logging.getLogger("asyncx.scheduler")

_DAY = 86_400.0
#: How well (seconds) the server's clock is worth knowing; past this, probing stops.
_CLOCK_PRECISION = 0.05
_NO_READINGS: tuple[None, ...] = ()
#: How many pieces of news of answers are remembered: more than can overtake one store round trip.
_ANSWER_MEMORY = 4096
#: Joins user, endpoint and scope into a window's key; a leading one marks an app-wide window.
_SEP = "\x1f"


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

    __slots__ = ("bounds", "high", "low")

    def __init__(self) -> None:
        self.low = -math.inf
        self.high = math.inf
        #: ``(low, high)`` once anything is known, as stores take it.
        self.bounds: tuple[float, float] | None = None

    def observe(self, date: float, sent: float, received: float) -> None:
        low, high = date - received, date + 1.0 - sent
        if low > self.high or high < self.low:  # a clock jumped: start again from this response
            self.low, self.high = low, high
        else:
            self.low, self.high = max(self.low, low), min(self.high, high)
        self.bounds = (self.low, self.high)


class _Budget:
    """One user's use of one endpoint: its FIFO of waiting calls, the windows it needs room in (by key,
    in the store) and its counters. ``scopes`` names the header scope that speaks for each window."""

    __slots__ = (
        "again",
        "blocked_on",
        "draining",
        "endpoint",
        "handed",
        "in_flight",
        "in_ready",
        "rate_limited",
        "rejected",
        "scopes",
        "sent",
        "specs",
        "touched",
        "user",
        "waited",
        "waiters",
        "wake_at",
        "warned",
    )

    def __init__(
        self, user: str, endpoint: str, scopes: tuple[str | None, ...], specs: tuple[WindowSpec, ...]
    ) -> None:
        self.user = user
        self.endpoint = endpoint
        self.scopes = scopes
        self.specs = specs
        self.waiters: deque[asyncio.Future[Permit]] | None = None
        self.wake_at: float | None = None
        self.blocked_on: str | None = None
        self.in_ready = False
        self.draining = False
        self.handed = False  # popped from the ring with a freed slot kept for it
        self.again = False
        self.in_flight = 0
        self.touched = 0.0
        self.sent = 0
        self.waited = 0.0
        self.rate_limited = 0
        self.rejected = 0
        self.warned = False  # about impossible headers: once per budget

    def queued(self) -> bool:
        """Whether a live call waits in the queue (cancelled ones at its head are dropped on the way)."""
        waiters = self.waiters
        while waiters:
            if not waiters[0].done():
                return True
            waiters.popleft()
        return False


class Permit:
    """The right to make one send. ``settle(answer)`` hands the scheduler X's answer, as read by
    ``read_answer``; a permit left unsettled counts as a send whose answer was lost.

    After a 429 whose headers name a reset, ``parked`` is true: the budget waits for that reset and
    the call should be queued again. ``retry_at`` is when budget is expected back (local time).
    """

    __slots__ = ("_budget", "_held", "_response", "_ticket", "granted_at", "parked", "retry_at", "settled")

    def __init__(self, budget: _Budget, held: int, granted_at: float, ticket: object) -> None:
        self._budget = budget
        self._held = held  # how many of the budget's windows the grant was counted in
        self._ticket = ticket
        self._response: ServerAnswer | None = None
        self.granted_at = granted_at
        self.settled = False
        self.parked = False
        self.retry_at: float | None = None

    def settle(self, answer: ServerAnswer) -> None:
        """Record X's answer; the scheduler reads it when the ``async with`` block ends."""
        if self._response is None:
            self._response = answer


class _Acquire:
    """``async with scheduler.acquire(...) as permit``: waits for room, then always releases it."""

    __slots__ = ("_budget", "_max_wait", "_permit", "_scheduler")

    def __init__(self, scheduler: Scheduler, budget: _Budget, max_wait: float | None) -> None:
        self._scheduler = scheduler
        self._budget = budget
        self._max_wait = max_wait
        self._permit: Permit | None = None

    async def __aenter__(self) -> Permit:
        scheduler, budget = self._scheduler, self._budget
        taken = None
        if not budget.queued() and not scheduler._ready and scheduler._in_flight < scheduler.max_in_flight:
            # The fast path: nobody is ahead, so ask the store at once.
            now = scheduler._clock()
            news = scheduler._news
            specs = budget.specs
            scheduler._in_flight += 1
            budget.in_flight += 1
            try:
                local = scheduler._local
                if local is not None:
                    taken = local.take_now(specs, 1, now, scheduler._skew())
                else:
                    scheduler._reserved += 1
                    try:
                        taken = await scheduler._store.take(specs, 1, now, scheduler._skew())
                    finally:
                        scheduler._reserved -= 1
            finally:
                if taken is None or not taken.granted:
                    scheduler._in_flight -= 1
                    budget.in_flight -= 1
            if taken.granted:
                budget.touched = now
                self._permit = Permit(budget, len(specs), now, taken.ticket)
                return self._permit
            self._permit = await scheduler._wait(budget, self._max_wait, (taken, now, news))
            return self._permit
        self._permit = await scheduler._wait(budget, self._max_wait, None)
        return self._permit

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        permit = self._permit
        if permit is not None and not permit.settled:
            permit.settled = True
            await self._scheduler._finish(permit)


class Scheduler:
    """Grants permits per (user, endpoint) budget so that no send exceeds a window X enforces.

    ``limits`` maps endpoint names to per-user windows and ``app:<endpoint>`` to app-wide ones
    (defaults from X's documentation). ``clock`` and ``sleep`` are injectable so tests run on a fake
    clock. ``max_in_flight`` bounds open requests across all budgets. ``store`` holds the windows'
    counts (a ``MemoryStore`` unless given); the scheduler closes it.
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
        store: Store | None = None,
    ) -> None:
        self._limits = resolve_limits(limits)
        self._configured = frozenset(limits or ())
        self._clock = clock
        self._sleep = sleep
        self.max_in_flight = max_in_flight
        self.reset_margin = reset_margin
        self.server_clock = ServerClock()
        self._budgets: dict[tuple[str, str], _Budget] = {}
        self._app_specs: dict[str, tuple[WindowSpec, ...]] = {}
        if store is not None and not isinstance(store, Store):
            raise TypeError(f"store must implement asyncx.Store, not {type(store).__name__}")
        self._store: Store = MemoryStore() if store is None else store
        # A memory store never waits: the hot path calls it without making a coroutine.
        self._local = self._store if type(self._store) is MemoryStore else None
        self._store.subscribe(self._unblock)
        self._blocked: dict[str, list[_Budget]] = {}  # window key -> budgets waiting for its answer
        # News of answers, numbered as it comes, so a budget told "wait for an answer" can tell whether
        # that answer already came while the store was replying.
        self._news = 0
        self._answered: dict[str, int] = {}  # window key -> number of the last news of an answer in it
        self._resynced = -1  # number of the last time the store said news may have been missed
        self._tasks: set[asyncio.Task[None]] = set()
        self._learned: dict[str, dict[str, int]] = {}  # endpoint -> scope -> limit the server reported
        self._totals: dict[str, list[float]] = {}
        self._in_flight = 0  # granted and unanswered, plus slots held while the store is asked
        self._reserved = 0  # of those, the slots held while the store is asked
        self._waiting = 0
        self._ready: deque[_Budget] = deque()
        self._handed = 0  # freed slots kept for budgets popped from the ring, until they drain
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
    def store(self) -> Store:
        """Where the windows' counts live."""
        return self._store

    @property
    def in_flight(self) -> int:
        """Sends granted and not yet answered."""
        return self._in_flight - self._reserved

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
        """Stop the timers, end every waiting call with an error (none of them was sent), close the store."""
        for task in (self._timer, self._refiner, *self._tasks):
            if task is not None:
                task.cancel()
        self._timer = self._refiner = None
        for budget in self._budgets.values():
            while budget.waiters:
                future = budget.waiters.popleft()
                if not future.done():
                    future.set_exception(
                        XError("the client was closed while this call waited for rate budget")
                    )
        await self._store.aclose()

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
        specs: list[WindowSpec] = []
        base = f"{user}{_SEP}{endpoint}{_SEP}"
        per_user = self._limits.get(endpoint, ())
        learned = self._learned.setdefault(endpoint, {})
        if not any(w.window_seconds < _DAY for w in per_user):
            scopes.append("window")  # nothing configured: learn it from the first answer
            specs.append(WindowSpec(base + "window", learned.get("window"), 900.0, False))
        # A documented default is a guess until X answers (so: one probe); what the caller set is not.
        trusted = endpoint in self._configured
        for i, limit in enumerate(per_user):
            scope = "user-24h" if limit.window_seconds >= _DAY else "window"
            named = scope if scope not in scopes else None
            scopes.append(named)
            requests = learned.get(scope, limit.requests)
            specs.append(WindowSpec(base + (named or str(i)), requests, limit.window_seconds, trusted))
        shared = self._app_specs.get(endpoint)
        if shared is None:
            guess = APP_PREFIX + endpoint not in self._configured
            shared = self._app_specs[endpoint] = tuple(
                WindowSpec(f"{_SEP}app{_SEP}{endpoint}{_SEP}{i}", a.requests, a.window_seconds, True, guess)
                for i, a in enumerate(self._limits.get(APP_PREFIX + endpoint, ()))
            )
        for i, spec in enumerate(shared):
            scopes.append("app-24h" if i == 0 and spec.seconds >= _DAY else None)
            specs.append(spec)
        budget = _Budget(user, endpoint, tuple(scopes), tuple(specs))
        budget.touched = self._clock()
        self._totals.setdefault(endpoint, [0, 0.0, 0, 0])
        return budget

    def _expire(self) -> None:
        """Drop up to two idle budgets whose windows have surely ended: they hold nothing worth keeping."""
        now = self._clock()
        for _ in range(2):
            if len(self._budgets) < 2:
                return
            key = next(iter(self._budgets))
            b = self._budgets[key]
            if b.in_flight or b.draining or b.wake_at is not None or b.in_ready or b.queued():
                return
            span = max((s.seconds for s in b.specs if not s.key.startswith(_SEP)), default=0.0)
            if now < b.touched + span:
                return
            del self._budgets[key]

    def _skew(self) -> tuple[float, float] | None:
        return self.server_clock.bounds

    # -- granting --------------------------------------------------------------------------------

    def _eta(self, budget: _Budget, now: float, position: int) -> float:
        """When the call at ``position`` in the budget's queue should be sent, by the known windows."""
        eta = now
        for view in self._store.view(budget.specs, now, self._skew()):
            room = max(0, view.room)
            if position < room:
                continue
            per_window = view.limit if view.limit and view.limit > 0 else 1
            later = (position - room) // per_window
            start = view.reset if view.reset is not None else now + view.seconds
            eta = max(eta, start + self.reset_margin + later * view.seconds)
        return eta

    async def _wait(
        self, budget: _Budget, max_wait: float | None, refused: tuple[Taken, float, int] | None
    ) -> Permit:
        """Queue the call. ``refused`` is the store's no to the fast path, with when it was asked and the
        news count then."""
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
        if refused is not None and position == 0 and not budget.draining:
            if not self._park(budget, *refused):  # the store just said no: wait for what it named
                self._kick(budget)
        elif budget.wake_at is None and not budget.in_ready:
            self._kick(budget)
        log.debug("waiting for %s budget of user %s (%d queued)", budget.endpoint, budget.user, position + 1)
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

    def _kick(self, budget: _Budget) -> None:
        """Have the budget's queue drained: by a new task, or by the one already at it."""
        if budget.draining:
            budget.again = True
            return
        budget.draining = True
        self._spawn(self._drain(budget))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, budget: _Budget) -> None:
        """Grant the budget's waiters in FIFO order while its windows and the in-flight bound allow.

        Asks the store for as many grants as there are waiters and free slots in one call; when others
        wait for a slot, takes one and goes to the back of the ring, so slots are shared round-robin.
        """
        waiters = budget.waiters
        try:
            while waiters is not None and budget.queued():
                budget.again = False
                if budget.handed:
                    budget.handed = False
                    self._handed -= 1
                free = self.max_in_flight - self._in_flight - self._handed
                if free <= 0:
                    self._to_ring(budget)
                    return
                want = 1 if self._ready else min(len(waiters), free)
                now = self._clock()
                news = self._news
                skew = self._skew()
                specs = budget.specs  # X may name a new window while the store answers
                self._in_flight += want
                self._reserved += want
                budget.in_flight += want
                try:
                    taken = await self._store.take(specs, want, now, skew)
                except Exception as exc:
                    self._in_flight -= want
                    budget.in_flight -= want
                    self._fail(budget, exc)
                    return
                finally:
                    self._reserved -= want
                unused = want
                for _ in range(taken.granted):
                    while waiters and waiters[0].done():
                        waiters.popleft()
                    if not waiters:
                        break
                    waiters.popleft().set_result(Permit(budget, len(specs), now, taken.ticket))
                    unused -= 1
                if unused:
                    self._in_flight -= unused
                    budget.in_flight -= unused
                if unused > want - taken.granted:  # waiters left while the store answered
                    await self._give_back(budget, specs, unused - (want - taken.granted), taken.ticket)
                if taken.granted:
                    budget.touched = now
                if taken.granted < want:
                    if not budget.again and self._park(budget, taken, now, news):
                        return
                elif self._ready and budget.queued():
                    self._to_ring(budget)
                    return
        finally:
            budget.draining = False
            if budget.handed:  # the slot kept for it went unused: the next in the ring gets it
                budget.handed = False
                self._handed -= 1
                self._hand_on()

    def _to_ring(self, budget: _Budget) -> None:
        if not budget.in_ready:
            budget.in_ready = True
            self._ready.append(budget)

    def _fail(self, budget: _Budget, exc: Exception) -> None:
        """The store failed: every call waiting on this budget gets the error (nothing was sent)."""
        log.warning("rate-limit store failed for %s: %s", budget.endpoint, exc)
        waiters = budget.waiters
        while waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_exception(StoreUnavailable(str(exc)) if not isinstance(exc, XError) else exc)

    def _park(self, budget: _Budget, taken: Taken, now: float, news: int) -> bool:
        """Wait for the time the store named or, with none, for an answer in the window it named.

        ``news`` is the news count when the store was asked. False when that answer has come since (a
        shared store's news can overtake its reply): the budget should ask again rather than wait.
        """
        probe = True
        if taken.wake_at is not None:
            deadline = taken.wake_at + self.reset_margin
        else:
            key = taken.waiting_on or budget.specs[0].key
            if max(self._answered.get(key, -1), self._resynced) > news:
                return False
            blocked = self._blocked.setdefault(key, [])
            if budget not in blocked:
                blocked.append(budget)
            budget.blocked_on = key
            # Should that answer never come (its process died), the window has surely ended by then.
            seconds = next((s.seconds for s in budget.specs if s.key == key), 900.0)
            deadline, probe = now + seconds, False
        if budget.wake_at is not None and budget.wake_at <= deadline:
            return True
        budget.wake_at = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), budget))
        if self._timer_at is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = asyncio.get_running_loop().create_task(self._run_timer())
        if probe:
            self._maybe_refine(now)
        return True

    def _maybe_refine(self, now: float) -> None:
        """Start the clock probes if budgets wait long enough and the server's clock is known roughly."""
        clock = self.server_clock
        if (
            self._probe is not None
            and self._refiner is None
            and self._heap
            and clock.low != -math.inf
            and clock.high - clock.low > _CLOCK_PRECISION
            and self._heap[0][0] - now > 1.5
        ):
            self._refiner = asyncio.get_running_loop().create_task(self._refine_clock())

    def _unblock(self, key: str | None) -> None:
        """A window's answer came (None: any may have): budgets waiting for it ask the store again."""
        self._news += 1
        if key is None:
            self._resynced = self._news
            for each in list(self._blocked):
                self._unblock(each)
            return
        answered = self._answered
        answered[key] = self._news
        if len(answered) > _ANSWER_MEMORY:
            self._answered = {k: n for k, n in answered.items() if n > self._news - _ANSWER_MEMORY}
        blocked = self._blocked.pop(key, None)
        for budget in blocked or ():
            if budget.blocked_on == key:
                budget.blocked_on = None
                budget.wake_at = None  # its fallback wake-up is superseded
                self._kick(budget)

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
                if date is None or abs(date - sent) > HORIZON:
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
        """Parked budgets ask the store again with the better clock estimate: they may wake earlier."""
        for _, _, budget in list(self._heap):
            if budget.wake_at is not None and budget.blocked_on is None:
                budget.wake_at = None
                self._kick(budget)

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
                budget.blocked_on = None
                self._kick(budget)
        finally:
            if self._timer is asyncio.current_task():
                self._timer, self._timer_at = None, None

    # -- answers ---------------------------------------------------------------------------------

    async def _finish(self, permit: Permit) -> None:
        """Release a permit's room; with an answer, reconcile its windows with the headers."""
        budget = permit._budget
        response = permit._response
        now = self._clock()
        answer: Answer | None = None
        if response is not None:
            if response.problems and not budget.warned:
                budget.warned = True
                log.warning(
                    "ignored impossible rate-limit headers for %s of user %s: %s",
                    budget.endpoint,
                    budget.user,
                    "; ".join(response.problems),
                )
            readings = response.limits
            date = response.date
            if date is not None:
                self.server_clock.observe(date, permit.granted_at, now)
                if self._heap and self._refiner is None:
                    self._maybe_refine(now)  # budgets parked before the clock was known
            scopes = budget.scopes
            if readings:
                learned = self._learned[budget.endpoint]
                for scope, reading in readings.items():
                    if scope not in scopes:
                        self._adopt(budget, scope)
                        scopes = budget.scopes
                    if reading.limit and learned.get(scope) != reading.limit:
                        learned[scope] = reading.limit
                per_window: Sequence[LimitReading | None] = [readings.get(s or "") for s in scopes]
            else:
                per_window = _NO_READINGS
            status = response.status
            answer = Answer(status, per_window, response.retry_after if status == 429 else None)
        self._in_flight -= 1
        budget.in_flight -= 1
        budget.sent += 1
        self._totals[budget.endpoint][0] += 1
        skew = self.server_clock.bounds
        back_at = None
        try:
            if self._local is not None:
                back_at = self._local.settle_now(budget.specs, permit._held, answer, now, skew)
            else:  # shielded: a caller cancelled now must not leave the answer unrecorded
                back_at = await asyncio.shield(
                    self._store.settle(budget.specs, permit._held, answer, now, skew, permit._ticket)
                )
        except Exception as exc:  # the send is over either way; the store heals at the next reset
            log.warning("could not record an answer in the rate-limit store: %s", exc)
        finally:
            if self._blocked:
                for spec in budget.specs[: permit._held]:
                    if spec.key in self._blocked:
                        self._unblock(spec.key)
            self._slot_freed(budget)
        if answer is not None and answer.status == 429:
            budget.rate_limited += 1
            self._totals[budget.endpoint][2] += 1
            if back_at is not None:
                permit.parked = True
                permit.retry_at = back_at + self.reset_margin
            log.warning(
                "429 for %s of user %s; budget parked until %s",
                budget.endpoint,
                budget.user,
                f"{back_at - now:.1f}s from now" if back_at is not None else "unknown",
            )

    def _adopt(self, budget: _Budget, scope: str) -> None:
        """A response names a limit this budget had no window for (a 24-hour cap): track it from now on."""
        if scope == "app-24h":
            spec = WindowSpec(f"{_SEP}app{_SEP}{budget.endpoint}{_SEP}{scope}", None, _DAY)
            self._app_specs[budget.endpoint] = (*self._app_specs.get(budget.endpoint, ()), spec)
            targets = [b for b in self._budgets.values() if b.endpoint == budget.endpoint]
            if budget not in targets:
                targets.append(budget)
        else:
            seconds = 900.0 if scope == "window" else _DAY
            spec = WindowSpec(f"{budget.user}{_SEP}{budget.endpoint}{_SEP}{scope}", None, seconds)
            targets = [budget]
        for b in targets:
            b.scopes, b.specs = (*b.scopes, scope), (*b.specs, spec)

    def _refund(self, permit: Permit) -> None:
        """Undo a grant that was never used (its caller was cancelled first)."""
        budget = permit._budget
        permit.settled = True
        self._in_flight -= 1
        budget.in_flight -= 1
        self._spawn(self._give_back(budget, budget.specs[: permit._held], 1, permit._ticket, freed=True))

    async def _give_back(
        self, budget: _Budget, specs: Sequence[WindowSpec], n: int, ticket: object, freed: bool = False
    ) -> None:
        try:
            await self._store.refund(specs, n, self._clock(), self._skew(), ticket)
        except Exception as exc:
            log.warning("could not give unused budget back to the rate-limit store: %s", exc)
        if freed:
            self._slot_freed(budget)

    def _hand_on(self) -> None:
        """Keep a free slot for the budget at the head of the ring, and have it drained."""
        if self._ready:
            nxt = self._ready.popleft()
            nxt.in_ready = False
            if not nxt.handed:
                nxt.handed = True
                self._handed += 1
            self._kick(nxt)

    def _slot_freed(self, budget: _Budget) -> None:
        """An in-flight slot and the budget's room came back: the next budget in the ring goes first."""
        self._hand_on()
        if budget.waiters and budget.wake_at is None and not budget.in_ready:
            self._kick(budget)
