"""The coordinator: every single send happens inside ``async with scheduler.acquire(...)``.

It ties the parts together, each with one job: ``Rules`` (which windows a budget needs), the ``Store``
(the windows' counts), ``ServerClock`` (X's clock), ``Wakeups`` (one timer), ``Waiters`` and ``Ring``
(fair queues), ``News`` (who waits for which window's answer), the ``Outbox`` (what the store still
owes) and ``Counters``. A budget is one user's use of one endpoint, in exactly one ``State``:

* calls for one budget are granted in FIFO order; a global ``max_in_flight`` is shared round-robin
  between budgets, so a user with a long backlog never delays another user's first call;
* with nothing known, one request goes out and its answer teaches the limit;
* a budget out of room parks on the timer until its reset, then releases exactly as many waiters as
  the window allows;
* waiting costs a future per waiting call and nothing else: no polling.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any

from .._errors import ClientClosed, RateLimited, StoreUnavailable, XError
from .._models import RateLimit
from ._answers import LimitReading, ServerAnswer
from ._clock import ServerClock
from ._counters import BudgetStats, Counters
from ._memory import MemoryStore
from ._news import News
from ._outbox import Outbox
from ._queues import Ring, Waiters
from ._rules import Rules
from ._store import Answer, Skew, Store, Taken, WindowLike, low
from ._wakeups import Wakeups

__all__ = ["Permit", "Scheduler"]

log = logging.getLogger("asyncx.scheduler")

_NO_READINGS: tuple[None, ...] = ()


class State(enum.Enum):
    """Where a budget is: nothing to do, being drained, waiting in the ring, or parked."""

    IDLE = "idle"
    DRAINING = "draining"  # a task grants its waiters now
    AGAIN = "again"  # draining, and news came meanwhile: look again before parking
    HANDED = "handed"  # popped from the ring with a slot kept for it; its drain is on the way
    READY = "ready"  # in the ring, waiting for an in-flight slot
    PARKED = "parked"  # on the timer until its windows have room
    BLOCKED = "blocked"  # waiting for news of an answer in one window (a timer as fallback)


_BUSY = (State.DRAINING, State.AGAIN, State.HANDED)
#: How coarsely a budget's last use is kept, in seconds.
_TICK = 1.0


class _Budget:
    """One user's use of one endpoint: its state, its FIFO of waiting calls, the windows it needs room
    in (by key, in the store) and its counters. ``scopes`` names the header scope of each window.

    Most budgets only ever send: the counters of waits, 429s and refusals are made on first need.
    """

    __slots__ = (
        "blocked_on",
        "endpoint",
        "in_flight",
        "more",
        "scopes",
        "sent",
        "specs",
        "state",
        "touched",
        "user",
        "waiters",
        "wake_at",
    )

    def __init__(
        self, user: str, endpoint: str, scopes: tuple[str | None, ...], specs: tuple[WindowLike, ...]
    ) -> None:
        self.sent = 0
        self.more: Counters | None = None  # waited, rate_limited, rejected (its ``sent`` unused)
        self.user = user
        self.endpoint = endpoint
        self.scopes = scopes
        self.specs = specs
        self.state = State.IDLE
        self.waiters: Waiters[Permit] | None = None
        self.wake_at: float | None = None  # the live timer deadline while PARKED or BLOCKED
        self.blocked_on: str | None = None
        self.in_flight = 0
        self.touched = 0.0

    def queued(self) -> int:
        return self.waiters.live if self.waiters is not None else 0

    def counters(self) -> Counters:
        more = self.more
        if more is None:
            more = self.more = Counters()
        return more

    def stats(self) -> BudgetStats:
        more = self.more
        if more is None:
            return BudgetStats(self.sent)
        return BudgetStats(self.sent, more.waited, more.rate_limited, more.rejected)


class Permit:
    """The right to make one send. ``settle(answer)`` hands the scheduler X's answer, as read by
    ``read_answer``; a permit left unsettled counts as a send whose answer was lost.

    After a 429 whose headers name a reset, ``parked`` is true: the budget waits for that reset and
    the call should be queued again. ``retry_at`` is when budget is expected back (local time).
    ``waited`` is how long the call queued for it (seconds).
    """

    __slots__ = (
        "answer",
        "budget",
        "done",
        "granted_at",
        "held",
        "parked",
        "retry_at",
        "returned",
        "ticket",
        "waited",
    )

    def __init__(self, budget: _Budget, held: int, granted_at: float, ticket: object) -> None:
        self.budget = budget
        self.held = held  # how many of the budget's windows the grant was counted in
        self.ticket = ticket
        self.answer: ServerAnswer | None = None
        self.granted_at = granted_at
        self.done = False
        self.parked = False
        self.retry_at: float | None = None
        self.returned = False
        self.waited = 0.0

    def settle(self, answer: ServerAnswer) -> None:
        """Record X's answer; the scheduler reads it when the ``async with`` block ends."""
        if self.answer is None:
            self.answer = answer

    def unused(self) -> None:
        """Nothing was sent (the connection was refused before the request was written): the grant is
        given back when the ``async with`` block ends, as if it had never been made."""
        self.returned = True


class _Acquire:
    """``async with scheduler.acquire(...) as permit``: waits for room, then always releases it."""

    __slots__ = ("_budget", "_enter", "_exit", "_max_wait", "_permit")

    def __init__(
        self,
        enter: Callable[[_Budget, float | None], Awaitable[Permit]],
        exit: Callable[[Permit], Awaitable[None] | None],
        budget: _Budget,
        max_wait: float | None,
    ) -> None:
        self._enter = enter
        self._exit = exit
        self._budget = budget
        self._max_wait = max_wait
        self._permit: Permit | None = None

    async def __aenter__(self) -> Permit:
        self._permit = await self._enter(self._budget, self._max_wait)
        return self._permit

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._permit is not None:
            pending = self._exit(self._permit)
            if pending is not None:
                await pending


class Scheduler:
    """Grants permits per (user, endpoint) budget so that no send exceeds a window X enforces.

    ``limits`` maps endpoint names to per-user windows and ``app:<endpoint>`` to app-wide ones
    (defaults from X's documentation). ``clock`` and ``sleep`` are injectable so tests run on a fake
    clock. ``max_in_flight`` bounds open requests across all budgets. ``store`` holds the windows'
    counts (a ``MemoryStore`` unless given); the scheduler closes it. ``flight_ttl`` is the longest a
    request can take: no grant counts as in flight for longer, whatever happened to its process.
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
        flight_ttl: float = 45.0,
    ) -> None:
        self._rules = Rules(limits)
        self._clock = clock
        self._sleep = sleep
        self.max_in_flight = max_in_flight
        self.reset_margin = reset_margin
        self.flight_ttl = flight_ttl
        self.server_clock = ServerClock()
        # By endpoint, then user: no (user, endpoint) tuple to keep per budget.
        self._budgets: dict[str, dict[str, _Budget]] = {}
        if store is not None and not isinstance(store, Store):
            raise TypeError(f"store must implement asyncx.Store, not {type(store).__name__}")
        self._store: Store = MemoryStore() if store is None else store
        self._store.configure(flight_ttl=flight_ttl)
        self._sync = self._store.synchronous
        # The memory store hands a budget its own windows, so an idle budget is two small objects. Not a
        # subclass's: it may look windows up by key.
        self._bind = self._store.bind if type(self._store) is MemoryStore else None
        self._news: News[_Budget] = News(self._unblocked)
        self._store.subscribe(self._news.heard)
        self._tasks: set[asyncio.Task[None]] = set()
        self._totals: dict[str, Counters] = {}
        self._in_flight = 0  # granted and unanswered, plus slots held while the store is asked
        self._reserved = 0  # of those, the slots held while the store is asked
        self._waiting = 0
        self._ring: Ring[_Budget] = Ring()
        self._wakeups: Wakeups[_Budget] = Wakeups(clock, sleep, self._woken)
        self._probe = clock_probe
        self._refiner: asyncio.Task[None] | None = None
        self._outbox = Outbox(sleep)
        self._closed = False
        self._ticked = 0.0
        self._warned: set[tuple[str, str]] = set()  # budgets told of impossible rate-limit headers

    # -- public ----------------------------------------------------------------------------------

    def acquire(self, user: str, endpoint: str, *, max_wait: float | None = None) -> _Acquire:
        """Wait for room to send once as ``user`` to ``endpoint``; raise ``RateLimited`` past ``max_wait``."""
        return _Acquire(self._enter, self.release, self._budget(user, endpoint), max_wait)

    def grant_now(self, user: str, endpoint: str) -> Permit | None:
        """A permit at once when one needs no waiting (a synchronous store, nobody queued ahead, room in
        every window), else None: then ``grant``. With ``release``, the client's hot path, which makes
        no coroutine and no context manager per send. Every permit granted must be released."""
        if not self._sync or self._closed:
            return None
        budget = self._budget(user, endpoint)
        if self._must_queue(budget):
            return None
        now, specs = self._clock(), budget.specs
        taken = self._store.take_now(specs, 1, now, self._skew())
        if not taken.granted:
            return None
        self._in_flight += 1
        budget.in_flight += 1
        return self._granted(budget, specs, now, taken)

    async def grant(self, user: str, endpoint: str, max_wait: float | None = None) -> Permit:
        """``acquire`` without the context manager: the permit must be given to ``release``."""
        return await self._enter(self._budget(user, endpoint), max_wait)

    def release(self, permit: Permit) -> Awaitable[None] | None:
        """End a permit from ``grant_now`` or ``grant`` (its answer settled, or ``unused``). None when
        that is done at once; else an awaitable that does it."""
        if permit.done:
            return None
        permit.done = True
        if self._sync or permit.returned:
            self._finish_now(permit)
            return None
        return self._finish(permit)

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

    @property
    def pending(self) -> int:
        """Settles and refunds kept until the store answers again."""
        return len(self._outbox)

    def __len__(self) -> int:
        """Budgets held in memory (idle ones expire)."""
        return sum(map(len, self._budgets.values()))

    def stats(self, user: str | None = None, endpoint: str | None = None) -> BudgetStats:
        """Counters for one budget, or totals over all budgets matching the given user and/or endpoint."""
        if user is not None and endpoint is not None:
            b = self._budgets.get(endpoint, {}).get(user)
            return BudgetStats() if b is None else b.stats()
        if user is not None:
            return Counters.total([d[user].stats() for d in self._budgets.values() if user in d])
        return Counters.total(
            [t.stats() for e, t in self._totals.items() if endpoint is None or e == endpoint]
        )

    def eta(self, user: str, endpoint: str, calls: int) -> float | None:
        """When ``calls`` more calls of a budget (its queue included) could all be sent, by the windows
        known now (local time); None for a budget not seen yet."""
        b = self._budgets.get(endpoint, {}).get(user)
        if b is None or calls <= 0:
            return None
        return self._eta(b, self._clock(), max(b.queued(), calls) - 1)

    def stop(self) -> None:
        """Grant nothing more: new calls and every waiting call end with ``ClientClosed`` (none of them
        was sent). Permits already granted still settle."""
        self._closed = True
        for budget in (b for by_user in self._budgets.values() for b in by_user.values()):
            if budget.waiters is not None:
                budget.waiters.fail_all(
                    ClientClosed("the client was closed while this call waited for budget")
                )

    async def aclose(self) -> None:
        """Stop, stop the timers, try once more to hand the store what it still owes, and close it."""
        self.stop()
        for task in (self._refiner, *self._tasks):
            if task is not None:
                task.cancel()
        self._wakeups.aclose()
        self._refiner = None
        await self._outbox.aclose()
        await self._store.aclose()

    # -- budgets ---------------------------------------------------------------------------------

    def _budget(self, user: str, endpoint: str) -> _Budget:
        by_user = self._budgets.get(endpoint)
        if by_user is None:
            by_user = self._budgets[endpoint] = {}
        budget = by_user.pop(user, None)
        if budget is None:
            specs: tuple[WindowLike, ...]
            scopes, specs = self._rules.windows(user, endpoint)
            now = self._clock()
            if self._bind is not None:
                specs = self._bind(specs, now + low(self._skew()))
            budget = _Budget(user, endpoint, scopes, specs)
            budget.touched = self._tick(now)
            if endpoint not in self._totals:
                self._totals[endpoint] = Counters()
            self._expire(by_user)
        by_user[user] = budget  # most recently used last, so idle budgets gather at the front
        return budget

    def _expire(self, by_user: dict[str, _Budget]) -> None:
        """Drop up to two idle budgets of an endpoint whose windows have surely ended: they hold nothing
        worth keeping."""
        now = self._clock()
        for _ in range(2):
            if len(by_user) < 2:
                return
            user = next(iter(by_user))
            b = by_user[user]
            if b.in_flight or b.state is not State.IDLE or b.queued():
                return
            if now < b.touched + Rules.span(b.specs) + _TICK:
                return
            del by_user[user]

    def _tick(self, now: float) -> float:
        """``now`` to the tick: budgets touched within one share a float, rather than each holding its own
        (expiry allows for the tick)."""
        if now - self._ticked >= _TICK or now < self._ticked:
            self._ticked = now
        return self._ticked

    def _skew(self) -> tuple[float, float] | None:
        return self.server_clock.bounds

    # -- granting --------------------------------------------------------------------------------

    async def _enter(self, budget: _Budget, max_wait: float | None) -> Permit:
        """Grant at once if nobody is ahead and the windows have room; else queue the call."""
        if self._closed:
            raise ClientClosed("the client is closed")
        if self._must_queue(budget):
            return await self._wait(budget, max_wait, None)
        now = self._clock()
        news = self._news.count
        specs = budget.specs
        self._in_flight += 1
        budget.in_flight += 1
        taken = None
        try:
            if self._sync:  # the hot path: no coroutine for a store that answers at once
                taken = self._store.take_now(specs, 1, now, self._skew())
            else:
                taken = await self._take(specs, 1, now)
        finally:
            if taken is None or not taken.granted:
                self._in_flight -= 1
                budget.in_flight -= 1
        if taken.granted:
            return self._granted(budget, specs, now, taken)
        return await self._wait(budget, max_wait, (taken, now, news))

    def _must_queue(self, budget: _Budget) -> bool:
        """Whether a call must queue whatever the windows say: calls of its budget wait ahead of it, or
        the in-flight slots are all taken or promised."""
        return bool(budget.queued() or self._ring or self._in_flight >= self.max_in_flight)

    def _granted(self, budget: _Budget, specs: Sequence[WindowLike], now: float, taken: Taken) -> Permit:
        """The permit for a grant the store made at once in ``specs`` (already counted in flight)."""
        budget.touched = self._tick(now)
        return Permit(budget, len(specs), now, taken.ticket)

    async def _take(self, specs: Sequence[WindowLike], n: int, now: float) -> Taken:
        if self._sync:
            return self._store.take_now(specs, n, now, self._skew())
        self._reserved += n  # slots held while the store is asked are not reported in flight
        try:
            taken = await self._store.take(specs, n, now, self._skew())
        finally:
            self._reserved -= n
        self._outbox.nudge()  # the store answers again: replay what it owes
        return taken

    def _eta(self, budget: _Budget, now: float, position: int) -> float:
        """When the call at ``position`` in the budget's queue should be sent, by the known windows.

        A window still being learned counts its known or documented limit as room: the probe's answer
        comes within a round trip, and the calls that fit go right after it.
        """
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
            budget.waiters = Waiters()
        position = budget.waiters.live
        if max_wait is not None:
            eta = self._eta(budget, now, position)
            if eta - now > max_wait:
                self._refuse(budget)
                raise RateLimited(
                    429,
                    retry_at=eta,
                    message=f"{budget.endpoint}: would wait {eta - now:.1f}s (max_wait {max_wait}s)",
                )
        future: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        budget.waiters.push(future, None if max_wait is None else now + max_wait)
        if refused is not None and position == 0 and budget.state is State.IDLE:
            if not self._park(budget, *refused):  # the store just said no: wait for what it named
                self._kick(budget)
        elif budget.state is State.IDLE:
            self._kick(budget)
        self._waiting += 1
        try:
            permit = await future
        except asyncio.CancelledError:
            if not future.done() or future.cancelled():
                budget.waiters.left(future)
            elif future.exception() is None:
                self._refund(future.result())  # granted just as it was cancelled: give the room back
            raise
        finally:
            self._waiting -= 1
        waited = permit.waited = permit.granted_at - now
        if waited:
            budget.counters().waited += waited
        self._totals[budget.endpoint].waited += waited
        return permit

    def _refuse(self, budget: _Budget) -> None:
        budget.counters().rejected += 1
        self._totals[budget.endpoint].rejected += 1

    def _kick(self, budget: _Budget) -> None:
        """Have the budget's queue drained: by a new task, or by the one already at it."""
        if budget.state in _BUSY:
            if budget.state is State.DRAINING:
                budget.state = State.AGAIN
            return
        budget.state = State.DRAINING
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
            while waiters is not None and waiters.live:
                if budget.state is State.HANDED:
                    self._ring.used()
                budget.state = State.DRAINING
                free = self.max_in_flight - self._in_flight - self._ring.kept
                if free <= 0:
                    self._to_ring(budget)
                    return
                want = 1 if self._ring else min(waiters.live, free)
                now = self._clock()
                news = self._news.count
                specs = budget.specs  # X may name a new window while the store answers
                self._in_flight += want
                budget.in_flight += want
                try:
                    taken = await self._take(specs, want, now)
                except Exception as exc:
                    self._in_flight -= want
                    budget.in_flight -= want
                    self._fail(budget, exc)
                    return
                unused = want
                for _ in range(taken.granted):
                    future = waiters.pop()
                    if future is None:
                        break
                    future.set_result(Permit(budget, len(specs), now, taken.ticket))
                    unused -= 1
                if unused:
                    self._in_flight -= unused
                    budget.in_flight -= unused
                if unused > want - taken.granted:  # waiters left while the store answered
                    await self._give_back(budget, specs, unused - (want - taken.granted), taken.ticket)
                if taken.granted:
                    budget.touched = self._tick(now)
                if taken.granted < want:
                    if budget.state is not State.AGAIN and self._park(budget, taken, now, news):
                        return
                elif self._ring and waiters.live:
                    self._to_ring(budget)
                    return
        finally:
            if budget.state is State.HANDED:  # the slot kept for it went unused: the next gets it
                self._ring.used()
                budget.state = State.IDLE
                self._hand_on()
            elif budget.state in _BUSY:
                budget.state = State.IDLE

    def _to_ring(self, budget: _Budget) -> None:
        budget.state = State.READY
        self._ring.join(budget)

    def _fail(self, budget: _Budget, exc: Exception) -> None:
        """The store failed: every call waiting on this budget gets the error (nothing was sent)."""
        log.warning("rate-limit store failed for %s: %s", budget.endpoint, exc)
        if budget.waiters is not None:
            budget.waiters.fail_all(exc if isinstance(exc, XError) else StoreUnavailable(str(exc)))

    def _park(self, budget: _Budget, taken: Taken, now: float, news: int) -> bool:
        """Wait for the time the store named or, with none, for an answer in the window it named.

        ``news`` is the news count when the store was asked. False when that answer has come since (a
        shared store's news can overtake its reply): the budget should ask again rather than wait.
        """
        if taken.wake_at is not None:
            deadline = taken.wake_at + self.reset_margin
            state = State.PARKED
        else:
            key = taken.waiting_on or budget.specs[0].key
            if not self._news.wait(key, budget, news):
                return False
            budget.blocked_on = key
            # Should that answer never come (its process died), its grant stops counting by then.
            seconds = next((s.seconds for s in budget.specs if s.key == key), 900.0)
            deadline, state = now + min(seconds, self.flight_ttl), State.BLOCKED
        if (
            budget.wake_at is not None
            and budget.wake_at <= deadline
            and budget.state
            in (
                State.PARKED,
                State.BLOCKED,
            )
        ):
            return True
        budget.state = state
        budget.wake_at = deadline
        self._wakeups.schedule(deadline, budget)
        if state is State.PARKED:
            self._expire_waiters(budget, deadline)
            self._maybe_refine(now)
        return True

    def _expire_waiters(self, budget: _Budget, wake: float) -> None:
        """Calls admitted on an estimate that proved short (a limit learned while they queued) leave as
        soon as their wait is known to pass their ``max_wait``, spending nothing."""
        if budget.waiters is None:
            return
        for _ in budget.waiters.expire(wake):
            self._refuse(budget)

    def _woken(self, budget: _Budget, deadline: float) -> None:
        if budget.wake_at != deadline or budget.state not in (State.PARKED, State.BLOCKED):
            return  # superseded by an earlier wake-up, or woken by news
        budget.wake_at = None
        budget.blocked_on = None
        budget.state = State.IDLE
        self._kick(budget)

    def _maybe_refine(self, now: float) -> None:
        """Start the clock probes if budgets wait long enough and the server's clock is known roughly."""
        first = self._wakeups.first()
        if (
            self._probe is not None
            and self._refiner is None
            and first is not None
            and first - now > 1.5
            and self.server_clock.worth_refining()
        ):
            self._refiner = asyncio.get_running_loop().create_task(self._refine_clock())

    async def _refine_clock(self) -> None:
        assert self._probe is not None
        if await self.server_clock.refine(self._probe, self._clock, self._sleep, self._wakeups.first):
            self._rewake()
        self._refiner = None

    def _rewake(self) -> None:
        """Parked budgets ask the store again with the better clock estimate: they may wake earlier."""
        for budget in self._wakeups:
            if budget.state is State.PARKED:
                budget.wake_at = None
                budget.state = State.IDLE
                self._kick(budget)

    def _unblocked(self, budget: _Budget, key: str) -> None:
        """The answer a budget waited for came: it asks the store again."""
        if budget.blocked_on == key and budget.state is State.BLOCKED:
            budget.blocked_on = None
            budget.wake_at = None  # its fallback wake-up is superseded
            budget.state = State.IDLE
            self._kick(budget)

    # -- answers ---------------------------------------------------------------------------------

    async def _finish(self, permit: Permit) -> None:
        """Release a permit's room; with an answer, reconcile its windows with the headers (a store that
        must be awaited; ``release`` calls ``_finish_now`` for the others)."""
        now = self._clock()
        answer = self._opening(permit, now)
        specs, held, skew = permit.budget.specs, permit.held, self._skew()
        back_at = None
        try:  # shielded: a caller cancelled now must not leave the answer unrecorded
            back_at = await asyncio.shield(self._store.settle(specs, held, answer, now, skew, permit.ticket))
        except Exception as exc:
            self._keep(exc, permit, answer, now, skew)
        finally:
            self._settled(permit)
        self._after(permit, answer, back_at, now)

    def _finish_now(self, permit: Permit) -> None:
        """``_finish`` for a synchronous store (or a grant never used): nothing to await."""
        if permit.returned:
            self._refund(permit)
            return
        now = self._clock()
        answer = self._opening(permit, now)
        skew = self._skew()
        back_at = None
        try:
            back_at = self._store.settle_now(permit.budget.specs, permit.held, answer, now, skew)
        except Exception as exc:
            self._keep(exc, permit, answer, now, skew)
        finally:
            self._settled(permit)
        self._after(permit, answer, back_at, now)

    def _opening(self, permit: Permit, now: float) -> Answer | None:
        """Count the send as answered (or lost), and read its answer."""
        budget = permit.budget
        answer = self._answer(budget, permit, now)
        self._in_flight -= 1
        budget.in_flight -= 1
        budget.sent += 1
        self._totals[budget.endpoint].sent += 1
        return answer

    def _keep(self, exc: Exception, permit: Permit, answer: Answer | None, now: float, skew: Skew) -> None:
        """The store could not record an answer: it is kept, and applied once the store answers again."""
        log.warning("could not record an answer in the rate-limit store (kept for later): %s", exc)
        specs, held, store = permit.budget.specs, permit.held, self._store
        self._outbox.keep(lambda: store.settle(specs, held, answer, now, skew, permit.ticket))

    def _settled(self, permit: Permit) -> None:
        budget = permit.budget
        if self._news.waiting:
            self._news.heard_any(spec.key for spec in budget.specs[: permit.held])
        self._slot_freed(budget)

    def _after(self, permit: Permit, answer: Answer | None, back_at: float | None, now: float) -> None:
        if answer is None or answer.status != 429:
            return
        budget = permit.budget
        budget.counters().rate_limited += 1
        self._totals[budget.endpoint].rate_limited += 1
        if back_at is not None:
            permit.parked = True
            permit.retry_at = back_at + self.reset_margin
        log.warning(
            "429 for %s of user %s; budget parked until %s",
            budget.endpoint,
            budget.user,
            f"{back_at - now:.1f}s from now" if back_at is not None else "unknown",
        )

    def _answer(self, budget: _Budget, permit: Permit, now: float) -> Answer | None:
        """The store's view of X's answer, learning the server's clock and new limits on the way."""
        response = permit.answer
        if response is None:
            return None
        if response.problems and (budget.endpoint, budget.user) not in self._warned:
            self._warned.add((budget.endpoint, budget.user))  # once per budget
            log.warning(
                "ignored impossible rate-limit headers for %s of user %s: %s",
                budget.endpoint,
                budget.user,
                "; ".join(response.problems),
            )
        if response.date is not None:
            self.server_clock.observe(response.date, permit.granted_at, now)
            if len(self._wakeups) and self._refiner is None:
                self._maybe_refine(now)  # budgets parked before the clock was known
        readings = response.limits
        per_window: Sequence[LimitReading | None] = _NO_READINGS
        if readings:
            for scope, reading in readings.items():
                if scope not in budget.scopes:
                    self._adopt(budget, scope)
                self._rules.learn(budget.endpoint, scope, reading.limit)
            per_window = [readings.get(s or "") for s in budget.scopes]
            if response.status == 429:
                server_now = response.date if response.date is not None else now + low(self._skew())
                per_window = _credible(per_window, budget.specs, server_now)
        status = response.status
        return Answer(status, per_window, response.retry_after if status == 429 else None)

    def _adopt(self, budget: _Budget, scope: str) -> None:
        """A response names a limit this budget had no window for (a 24-hour cap): track it from now on."""
        spec: WindowLike
        spec, shared = self._rules.adopt(budget.user, budget.endpoint, scope)
        if self._bind is not None:
            (spec,) = self._bind((spec,), self._clock() + low(self._skew()))
        targets = [budget]
        if shared:
            targets += [b for b in self._budgets.get(budget.endpoint, {}).values() if b is not budget]
        for b in targets:
            b.scopes, b.specs = (*b.scopes, scope), (*b.specs, spec)

    def _refund(self, permit: Permit) -> None:
        """Undo a grant that was never used (its caller was cancelled first, or nothing was sent)."""
        budget = permit.budget
        permit.done = True
        self._in_flight -= 1
        budget.in_flight -= 1
        specs = budget.specs[: permit.held]
        if self._sync:  # at once, so a retry that follows finds the room
            self._store.refund_now(specs, 1, self._clock(), self._skew())
            self._refunded(budget, specs)
        else:
            self._spawn(self._give_back(budget, specs, 1, permit.ticket, freed=True))

    async def _give_back(
        self, budget: _Budget, specs: Sequence[WindowLike], n: int, ticket: object, freed: bool = False
    ) -> None:
        now, skew = self._clock(), self._skew()
        try:
            if self._sync:
                self._store.refund_now(specs, n, now, skew)
            else:
                await self._store.refund(specs, n, now, skew, ticket)
        except Exception as exc:
            log.warning("could not give unused budget back to the rate-limit store (kept for later): %s", exc)
            self._outbox.keep(lambda: self._store.refund(specs, n, now, skew, ticket))
        if freed:
            self._refunded(budget, specs)

    def _refunded(self, budget: _Budget, specs: Sequence[WindowLike]) -> None:
        """Room came back: budgets waiting on those windows ask again, and the slot goes on."""
        if self._news.waiting:
            self._news.heard_any(spec.key for spec in specs)
        self._slot_freed(budget)

    def _hand_on(self) -> None:
        """Keep a free slot for the budget whose turn it is in the ring, and have it drained."""
        nxt = self._ring.next()
        if nxt is not None:
            nxt.state = State.HANDED
            self._spawn(self._drain(nxt))

    def _slot_freed(self, budget: _Budget) -> None:
        """An in-flight slot and the budget's room came back: the next budget in the ring goes first."""
        self._hand_on()
        if budget.queued() and budget.state is State.IDLE:
            self._kick(budget)


#: Slack (seconds) on a window's length before a reset beyond it cannot be that window's.
_RESET_SLACK = 60.0


def _credible(
    readings: Sequence[LimitReading | None], specs: Sequence[WindowLike], server_now: float
) -> list[LimitReading | None]:
    """A 429's readings, with any reset further off than its window lasts dropped (read as passed): a
    15-minute window cannot reopen in 22 hours, and parking for that would stall the budget a day. The
    store then waits for the reset it knew, or probes once shortly after."""
    out = list(readings)
    for i, (reading, spec) in enumerate(zip(readings, specs, strict=False)):
        if reading is not None and reading.reset > server_now + spec.seconds + _RESET_SLACK:
            out[i] = reading._replace(reset=0)
    return out
