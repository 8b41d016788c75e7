"""The rate-limit scheduler on a fake clock: fixed windows, headers, skew, 429s, fairness, max_wait."""

import asyncio
import math
from collections.abc import Iterator, Sequence
from email.utils import formatdate
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncx
from asyncx import MemoryStore, Taken, WindowLike
from asyncx._ratelimit import Scheduler, ServerAnswer, read_answer
from asyncx._ratelimit._clock import ServerClock
from asyncx._ratelimit._store import Skew
from asyncx.testing import ManualClock

T0 = 1_700_000_000.0


def _answer(response: asyncx.Response) -> ServerAnswer:
    """X's answer as the client hands it to the scheduler."""
    return read_answer(response.status, response.headers, T0)


class YieldingStore(MemoryStore):
    """The memory store's rules behind calls that yield to the event loop, as a networked store's do."""

    synchronous = False

    async def take(self, *args: Any) -> Taken:
        await asyncio.sleep(0)
        return self.take_now(*args)

    async def settle(self, *args: Any) -> float | None:
        await asyncio.sleep(0)
        return self.settle_now(*args[:5])

    async def refund(self, *args: Any) -> None:
        await asyncio.sleep(0)
        self.refund_now(*args[:4])


#: The store every scheduler in this module uses; the fixture below runs each test with both.
STORE: list[type[MemoryStore]] = [MemoryStore]


@pytest.fixture(autouse=True, params=[MemoryStore, YieldingStore], ids=["memory", "yielding"])
def _each_store(request: pytest.FixtureRequest) -> Iterator[None]:
    STORE[0] = request.param
    yield
    STORE[0] = MemoryStore


class WindowModel:
    """X's fixed window for one budget, answering with headers on its own (possibly skewed) clock."""

    def __init__(self, clock: ManualClock, limit: int, seconds: float, skew: float = 0.0) -> None:
        self.clock, self.limit, self.seconds, self.skew = clock, limit, seconds, skew
        self.reset: int | None = None
        self.count = 0
        self.statuses: list[int] = []

    def answer(self) -> asyncx.Response:
        now = self.clock.time() + self.skew
        if self.reset is None or now >= self.reset:
            self.reset, self.count = math.ceil(now + self.seconds), 0
        status = 429 if self.count >= self.limit else 200
        self.count += status == 200
        self.statuses.append(status)
        headers = {
            "x-rate-limit-limit": str(self.limit),
            "x-rate-limit-remaining": str(self.limit - self.count),
            "x-rate-limit-reset": str(self.reset),
            "date": formatdate(now, usegmt=True),
        }
        return asyncx.Response(status, headers, b"{}")


async def _send(s: Scheduler, server: WindowModel, user: str = "u", **kw: float) -> float:
    """One call through the scheduler; re-queued after a parking 429, like the client does."""
    while True:
        async with s.acquire(user, "create_tweet", **kw) as permit:
            response = server.answer()
            permit.settle(_answer(response))
            sent_at = s._clock()
        if response.status != 429 or not permit.parked:
            return sent_at


async def _drain(clock: ManualClock, tasks: list[asyncio.Task[float]], step: float = 0.25) -> list[float]:
    await clock.advance(0)
    while not all(t.done() for t in tasks):
        await clock.advance(step)
    return [t.result() for t in tasks]


def _scheduler(clock: ManualClock, **limits: asyncx.RateLimit | list[asyncx.RateLimit]) -> Scheduler:
    return Scheduler(limits or None, clock=clock.time, sleep=clock.sleep, store=STORE[0]())


async def test_fixed_window_sends_n_then_waits_for_the_reset() -> None:
    clock = ManualClock(T0)
    server = WindowModel(clock, 5, 10.0)
    s = _scheduler(clock, create_tweet=asyncx.RateLimit(5, 10.0))
    tasks = [asyncio.create_task(_send(s, server)) for _ in range(12)]
    times = await _drain(clock, tasks)
    assert server.statuses.count(429) == 0
    assert times[:5] == [T0] * 5
    assert all(T0 + 10 <= t <= T0 + 10.5 for t in times[5:10])
    assert all(T0 + 21 <= t <= T0 + 21.1 for t in times[10:])  # the server anchored window 2 at T0+10.05


async def test_never_refills_inside_a_window() -> None:
    """A continuously refilling bucket would send a 6th call at T0+2; a fixed window must not."""
    clock = ManualClock(T0)
    server = WindowModel(clock, 5, 10.0)
    s = _scheduler(clock, create_tweet=asyncx.RateLimit(5, 10.0))
    for _ in range(5):
        await _send(s, server)
    late = asyncio.create_task(_send(s, server))
    await clock.advance(9.5)
    assert not late.done()
    await _drain(clock, [late])
    assert server.statuses == [200] * 6


async def test_server_headers_override_a_configured_limit() -> None:
    clock = ManualClock(T0)
    server = WindowModel(clock, 2, 10.0)  # the server allows fewer than configured
    s = _scheduler(clock, create_tweet=asyncx.RateLimit(50, 10.0))
    # Calls sent before X's first answer trust the configuration; the answer corrects it.
    await _drain(clock, [asyncio.create_task(_send(s, server)) for _ in range(6)])
    assert server.statuses.count(200) == 6
    before = len(server.statuses)
    await _drain(clock, [asyncio.create_task(_send(s, server)) for _ in range(6)])
    assert server.statuses[before:] == [200] * 6  # X's limit of 2 rules from then on


async def test_learns_an_unknown_limit_from_one_probe() -> None:
    clock = ManualClock(T0)
    server = WindowModel(clock, 3, 10.0)
    s = _scheduler(clock, curate_collection=[])  # nothing configured, nothing published
    sends = []

    async def call() -> float:
        async with s.acquire("u", "curate_collection") as permit:
            sends.append(s.in_flight)
            await asyncio.sleep(0)
            permit.settle(_answer(server.answer()))
        return clock.time()

    tasks = [asyncio.create_task(call()) for _ in range(7)]
    await _drain(clock, tasks)
    assert sends[0] == 1  # one probe alone
    assert server.statuses.count(429) == 0
    assert len(server.statuses) == 7


@pytest.mark.parametrize("skew", [-900.0, -61.3, 0.0, 59.7, 900.0])
async def test_reset_read_against_the_servers_clock(skew: float) -> None:
    """A server clock minutes off neither hangs the client (waits ~ a window) nor hammers it."""
    clock = ManualClock(T0 + 0.37)
    server = WindowModel(clock, 2, 10.0, skew=skew)
    s = _scheduler(clock, create_tweet=asyncx.RateLimit(2, 10.0))
    tasks = [asyncio.create_task(_send(s, server)) for _ in range(6)]
    times = await _drain(clock, tasks, step=0.1)
    assert server.statuses.count(429) == 0
    assert times[-1] - times[0] <= 2 * 10 + 2 * 1.2  # at most ~1 s late per window (Date is whole seconds)


async def test_a_429_parks_only_that_users_budget() -> None:
    clock = ManualClock(T0)
    busy = WindowModel(clock, 1, 30.0)
    other = WindowModel(clock, 10, 30.0)
    s = _scheduler(clock, create_tweet=asyncx.RateLimit(10, 30.0))
    busy.answer()  # another client used busy's only request: our first one earns the 429
    first = [asyncio.create_task(_send(s, busy, "busy"))]
    await clock.advance(0)
    first += [asyncio.create_task(_send(s, busy, "busy")) for _ in range(2)]  # queued behind the parked one
    await clock.advance(0)
    b = await _send(s, other, "other")
    assert b == T0
    assert busy.statuses == [200, 429]
    assert s.stats("busy", "create_tweet").rate_limited == 1
    times = await _drain(clock, first)
    assert busy.statuses.count(429) == 1
    assert T0 + 90 <= max(times) <= T0 + 92.1  # one per window: the third waited three resets


async def test_fifo_per_budget_and_a_backlog_does_not_delay_another_user() -> None:
    clock = ManualClock(T0)
    s = Scheduler(
        {"create_tweet": asyncx.RateLimit(1000, 10.0)},
        clock=clock.time,
        sleep=clock.sleep,
        max_in_flight=2,
        store=STORE[0](),
    )
    order: list[str] = []
    gate = asyncio.Event()

    async def call(user: str, tag: str) -> None:
        async with s.acquire(user, "create_tweet"):
            order.append(tag)
            await gate.wait()

    backlog = [asyncio.create_task(call("heavy", f"h{i}")) for i in range(50)]
    await asyncio.sleep(0)
    light = asyncio.create_task(call("light", "l0"))
    await asyncio.sleep(0)
    assert order == ["h0", "h1"]
    gate.set()
    await asyncio.gather(*backlog, light)
    assert order.index("l0") <= 3  # served on the next free slot, not after 48 queued calls
    heavy = [t for t in order if t.startswith("h")]
    assert heavy == [f"h{i}" for i in range(50)]  # FIFO


async def test_release_exactly_remaining_waiters_at_reset() -> None:
    clock = ManualClock(T0)
    server = WindowModel(clock, 3, 10.0)
    s = _scheduler(clock, create_tweet=asyncx.RateLimit(3, 10.0))
    tasks = [asyncio.create_task(_send(s, server)) for _ in range(10)]
    await clock.advance(0)
    assert sum(t.done() for t in tasks) == 3
    await clock.advance(10.2)
    assert sum(t.done() for t in tasks) == 6
    assert s.waiting == 4
    await _drain(clock, tasks)
    assert server.statuses.count(429) == 0


async def test_max_wait_raises_at_once_and_spends_nothing() -> None:
    clock = ManualClock(T0)
    server = WindowModel(clock, 2, 10.0)
    s = _scheduler(clock, create_tweet=asyncx.RateLimit(2, 10.0))
    await _send(s, server)
    await _send(s, server)
    with pytest.raises(asyncx.RateLimited) as info:
        async with s.acquire("u", "create_tweet", max_wait=5.0):
            pytest.fail("must not be granted")
    assert info.value.retry_at is not None and T0 + 10 <= info.value.retry_at <= T0 + 11
    assert s.stats("u", "create_tweet").rejected == 1
    # Nothing was spent: a call that may wait gets the first slot of the next window.
    late = asyncio.create_task(_send(s, server, max_wait=60.0))
    times = await _drain(clock, [late])
    assert T0 + 10 <= times[0] <= T0 + 11 and server.statuses == [200, 200, 200]


async def test_cancelled_waiter_spends_nothing_and_leaves_no_trace() -> None:
    clock = ManualClock(T0)
    server = WindowModel(clock, 1, 10.0)
    s = _scheduler(clock, create_tweet=asyncx.RateLimit(1, 10.0))
    await _send(s, server)
    doomed = asyncio.create_task(_send(s, server))
    after = asyncio.create_task(_send(s, server))
    await clock.advance(1)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert s.waiting == 1
    times = await _drain(clock, [after])
    assert T0 + 10 <= times[0] <= T0 + 11  # took the slot the cancelled call would have had
    assert s.stats("u", "create_tweet").sent == 2


async def test_cancel_right_after_grant_returns_the_room() -> None:
    """A call granted and cancelled before it ran gives its slot and its window count back."""
    clock = ManualClock(T0)
    s = Scheduler(
        {"create_tweet": asyncx.RateLimit(5, 10.0)},
        clock=clock.time,
        sleep=clock.sleep,
        store=STORE[0](),
        max_in_flight=1,
    )
    async with s.acquire("u", "create_tweet") as permit:
        waiter = asyncio.create_task(s.acquire("u", "create_tweet").__aenter__())
        for _ in range(3):
            await asyncio.sleep(0)  # queued behind the in-flight slot
        permit.settle(_answer(asyncx.Response(201, {}, b"{}")))
    while s.in_flight == 0:
        await asyncio.sleep(0)  # the freed slot goes to the waiter: granted, but it has not run yet
    assert s.waiting == 1 and not waiter.done()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await clock.advance(0)
    assert s.in_flight == 0
    for _ in range(4):  # the window holds the first send only: four more go at once
        async with s.acquire("u", "create_tweet", max_wait=0.0):
            pass
    with pytest.raises(asyncx.RateLimited):
        async with s.acquire("u", "create_tweet", max_wait=0.0):
            pass


async def test_idle_budgets_expire() -> None:
    clock = ManualClock(T0)
    s = _scheduler(clock, create_tweet=asyncx.RateLimit(5, 10.0))
    for i in range(100):
        async with s.acquire(f"user{i}", "create_tweet") as permit:
            permit.settle(_answer(asyncx.Response(200, {}, b"{}")))
    assert len(s) == 100
    await clock.advance(11)
    for i in range(100, 200):
        async with s.acquire(f"user{i}", "create_tweet"):
            pass
    assert len(s) < 110


async def test_the_memory_store_keeps_shared_windows_and_a_budget_its_own() -> None:
    """A user's window is held by their budget alone (and dropped with it); an app-wide one is kept by
    the store and shared by every budget of the endpoint."""
    clock = ManualClock(T0)
    limits = {"create_tweet": asyncx.RateLimit(2, 10.0), "app:create_tweet": asyncx.RateLimit(3, 10.0)}
    s = Scheduler(limits, clock=clock.time, sleep=clock.sleep)

    async def send(user: str) -> bool:
        try:
            async with s.acquire(user, "create_tweet", max_wait=0.0) as permit:
                permit.settle(_answer(asyncx.Response(200, {}, b"{}")))
        except asyncx.RateLimited:
            return False
        return True

    assert [await send("ann"), await send("ann"), await send("ann")] == [True, True, False]  # ann's 2
    assert [await send("bob"), await send("cat")] == [True, False]  # the app's 3, whoever spent them
    assert len(s.store) == 1  # type: ignore[arg-type]  # the app-wide window, not the users'
    await s.aclose()


async def test_24_hour_cap_learned_from_headers_also_gates() -> None:
    clock = ManualClock(T0)
    s = _scheduler(clock, create_tweet=asyncx.RateLimit(100, 900.0))
    headers = {
        "x-rate-limit-limit": "100",
        "x-rate-limit-remaining": "99",
        "x-rate-limit-reset": str(int(T0) + 900),
        "x-user-limit-24hour-limit": "1",
        "x-user-limit-24hour-remaining": "0",
        "x-user-limit-24hour-reset": str(int(T0) + 86400),
        "date": formatdate(T0, usegmt=True),
    }
    async with s.acquire("u", "create_tweet") as permit:
        permit.settle(_answer(asyncx.Response(201, headers, b"{}")))
    with pytest.raises(asyncx.RateLimited) as info:
        async with s.acquire("u", "create_tweet", max_wait=3600):
            pass
    assert info.value.retry_at is not None and info.value.retry_at >= T0 + 86400


def test_server_clock_narrows_with_many_responses() -> None:
    c = ServerClock()
    c.observe(1000.0, 990.2, 990.3)  # server 1000.x while we were 990.2..990.3
    assert c.low == pytest.approx(9.7)
    c.observe(1001.0, 990.95, 991.0)
    assert c.low == pytest.approx(10.0) and c.high <= 10.8
    assert c.bounds == (c.low, c.high)  # what stores are given


async def test_clock_probes_pin_down_the_server_clock_while_budgets_wait() -> None:
    """One phase of whole-second Dates leaves up to 1 s of doubt; timed probes shrink it before the reset."""
    clock = ManualClock(T0 + 0.9)
    skew = 0.63  # the server is 0.63 s ahead: answers in a burst at T0+0.9 all say T0+1
    server = WindowModel(clock, 2, 10.0, skew=skew)
    probes: list[float] = []

    async def probe() -> dict[str, str]:
        probes.append(clock.time())
        return {"date": formatdate(clock.time() + skew, usegmt=True)}

    s = Scheduler(
        {"create_tweet": asyncx.RateLimit(2, 10.0)},
        clock=clock.time,
        sleep=clock.sleep,
        clock_probe=probe,
        store=STORE[0](),
    )
    tasks = [asyncio.create_task(_send(s, server)) for _ in range(3)]
    times = await _drain(clock, tasks, step=0.01)
    assert 2 <= len(probes) <= 12
    assert s.server_clock.high - s.server_clock.low <= 0.06
    true_reset_local = math.ceil(T0 + 0.9 + skew + 10) - skew  # the server's reset on our clock: T0+11.37
    assert true_reset_local <= times[2] <= true_reset_local + 0.15  # not ~T0+12, as one phase of Dates allows
    assert server.statuses == [200, 200, 200]


async def test_no_probe_without_a_long_wait() -> None:
    clock = ManualClock(T0)
    calls = 0

    async def probe() -> dict[str, str]:
        nonlocal calls
        calls += 1
        return {}

    server = WindowModel(clock, 1, 0.5)
    s = Scheduler(
        {"create_tweet": asyncx.RateLimit(1, 0.5)},
        clock=clock.time,
        sleep=clock.sleep,
        clock_probe=probe,
        store=STORE[0](),
    )
    await _drain(clock, [asyncio.create_task(_send(s, server)) for _ in range(3)])
    assert calls == 0


async def test_eta_counts_whole_windows_from_the_known_reset() -> None:
    """The bulk progress bar's ETA: 12 more calls at 5 per 10 s window, the window used up until T0+10."""
    clock = ManualClock(T0)
    server = WindowModel(clock, 5, 10.0)
    s = _scheduler(clock, create_tweet=asyncx.RateLimit(5, 10.0))
    assert s.eta("u", "create_tweet", 3) is None  # nothing known of this budget yet
    for _ in range(5):
        await _send(s, server)
    eta = s.eta("u", "create_tweet", 12)
    assert eta is not None and T0 + 30 <= eta <= T0 + 30.2  # windows at 10, 20 and 30 (5 + 5 + 2)
    assert s.now() == T0


async def test_documented_app_cap_dropped_when_x_does_not_report_it() -> None:
    """10,000 posts per app per day is a guess from the docs: answers without app headers lift it."""
    clock = ManualClock(T0)
    s = Scheduler(
        clock=clock.time, sleep=clock.sleep, store=STORE[0]()
    )  # the defaults, app:create_tweet included
    quiet = asyncx.Response(201, {"date": formatdate(T0, usegmt=True)}, b"{}")
    for i in range(10_050):
        async with s.acquire(f"user{i}", "create_tweet", max_wait=0) as permit:
            permit.settle(_answer(quiet))
    assert s.stats(endpoint="create_tweet").sent == 10_050


async def test_reported_app_cap_is_kept() -> None:
    clock = ManualClock(T0)
    s = Scheduler(clock=clock.time, sleep=clock.sleep, store=STORE[0]())
    headers = {
        "x-app-limit-24hour-limit": "2",
        "x-app-limit-24hour-remaining": "0",
        "x-app-limit-24hour-reset": str(int(T0) + 86_400),
        "date": formatdate(T0, usegmt=True),
    }
    async with s.acquire("a", "create_tweet") as permit:
        permit.settle(_answer(asyncx.Response(201, headers, b"{}")))
    with pytest.raises(asyncx.RateLimited):
        async with s.acquire("b", "create_tweet", max_wait=60):
            pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limit=st.integers(1, 6),
    window=st.sampled_from([1.0, 5.0, 15.0]),
    skew=st.floats(-120.0, 120.0),
    start_fraction=st.floats(0.0, 0.999),
    arrivals=st.lists(st.tuples(st.integers(0, 3), st.floats(0.0, 20.0)), min_size=1, max_size=30),
)
async def test_never_a_429_with_the_limit_configured(
    limit: int, window: float, skew: float, start_fraction: float, arrivals: list[tuple[int, float]]
) -> None:
    """Whatever the arrivals, the server's skew and its clock's phase, a configured limit earns no 429."""
    clock = ManualClock(T0 + start_fraction)
    servers = {u: WindowModel(clock, limit, window, skew=skew) for u in range(4)}
    s = _scheduler(clock, create_tweet=asyncx.RateLimit(limit, window))

    async def later(user: int, delay: float) -> float:
        await clock.sleep(delay)
        return await _send(s, servers[user], f"user{user}")

    tasks = [asyncio.create_task(later(u, d)) for u, d in arrivals]
    await _drain(clock, tasks, step=0.05)
    assert all(m.statuses.count(429) == 0 for m in servers.values())
    assert sum(len(m.statuses) for m in servers.values()) == len(arrivals)


class GatedStore(MemoryStore):
    """A memory store whose answers to ``take`` wait for the test to open its gate."""

    synchronous = False

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.failing = False

    async def take(self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew) -> Taken:
        await self.gate.wait()
        if self.failing:
            raise asyncx.StoreUnavailable("the store is down")
        return self.take_now(windows, n, now, skew)


async def test_calls_cancelled_while_the_store_answers_give_their_grants_back() -> None:
    clock = ManualClock(T0)
    store = GatedStore()
    s = Scheduler(
        {"create_tweet": asyncx.RateLimit(4, 10.0)},
        clock=clock.time,
        sleep=clock.sleep,
        max_in_flight=2,
        store=store,
    )
    release = asyncio.Event()

    async def hold() -> None:
        async with s.acquire("u", "create_tweet"):
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    await clock.advance(0)
    queued = [asyncio.create_task(s.acquire("u", "create_tweet").__aenter__()) for _ in range(2)]
    await clock.advance(0)
    store.gate.clear()
    release.set()  # two slots free: the queue's drain asks the store for both, and waits
    await clock.advance(0)
    for task in queued:
        task.cancel()
    await asyncio.gather(*holders, *queued, return_exceptions=True)
    store.gate.set()
    await clock.advance(0)
    assert s.in_flight == 0
    # Both grants came back: the window still has room for two sends now, at T0.
    for _ in range(2):
        async with s.acquire("u", "create_tweet", max_wait=0):
            pass


async def test_a_store_failure_fails_the_waiting_calls_without_sending() -> None:
    clock = ManualClock(T0)
    store = GatedStore()
    s = Scheduler(
        {"create_tweet": asyncx.RateLimit(1, 10.0)}, clock=clock.time, sleep=clock.sleep, store=store
    )
    async with s.acquire("u", "create_tweet"):
        pass
    waiting = [asyncio.create_task(s.acquire("u", "create_tweet").__aenter__()) for _ in range(2)]
    await clock.advance(1)  # they queue at T0 + 1: the window is anchored to end at T0 + 11
    store.failing = True
    await clock.advance(10.5)
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, asyncx.StoreUnavailable) for r in results)
    assert s.in_flight == 0 and s.stats("u", "create_tweet").sent == 1


async def test_closing_ends_every_waiting_call_with_an_error() -> None:
    clock = ManualClock(T0)
    s = _scheduler(clock, create_tweet=asyncx.RateLimit(1, 10.0))
    async with s.acquire("u", "create_tweet"):
        pass
    waiting = asyncio.create_task(s.acquire("u", "create_tweet").__aenter__())
    await clock.advance(1)
    await s.aclose()
    with pytest.raises(asyncx.XError, match="closed"):
        await waiting


class OvertakenStore(MemoryStore):
    """A shared store whose news of another process's answer reaches us before its own reply does."""

    synchronous = False

    def subscribe(self, on_answer: Any) -> None:
        self.on_answer = on_answer

    async def take(self, *args: Any) -> Taken:
        windows, n, now, skew = args
        taken = self.take_now(windows, n, now, skew)
        if taken.waiting_on is not None:  # meanwhile the window's first answer comes, and its news
            self.settle_now(windows, 1, asyncx.Answer(200, [(5, 4, int(now) + 900)]), now, skew)
            self.on_answer(taken.waiting_on)
        await asyncio.sleep(0)
        return taken


async def test_news_of_an_answer_that_overtakes_the_stores_reply_is_not_missed() -> None:
    clock = ManualClock(T0)
    s = Scheduler({"curate_collection": []}, clock=clock.time, sleep=clock.sleep, store=OvertakenStore())
    async with s.acquire("u", "curate_collection"):  # the probe that teaches the limit
        second = asyncio.create_task(s.acquire("u", "curate_collection").__aenter__())
        await clock.advance(0)
        assert second.done()  # not parked for a window waiting for news it already had
    assert s.in_flight == 1  # the second call's grant, still held


async def _concurrent(
    s: Scheduler, clock: ManualClock, server: WindowModel, calls: int, max_wait: float
) -> list[bool]:
    """Start ``calls`` calls at once; which were sent (True) and which refused for ``max_wait``."""

    async def call() -> bool:
        try:
            async with s.acquire("u", "create_tweet", max_wait=max_wait) as permit:
                permit.settle(_answer(server.answer()))
        except asyncx.RateLimited:
            return False
        return True

    tasks = [asyncio.create_task(call()) for _ in range(calls)]
    await clock.advance(0)
    return await asyncio.gather(*tasks)


async def test_max_wait_admits_exactly_what_fits_a_window_still_being_learned() -> None:
    """300 concurrent calls with max_wait against a fresh, documented 100-per-window budget: the 100
    that fit run (one probe, then the rest), the 200 that would wait a window are refused at once."""
    clock = ManualClock(T0)
    server = WindowModel(clock, 100, 900.0)
    s = _scheduler(clock)

    results = await _concurrent(s, clock, server, 300, max_wait=5.0)
    assert sum(results) == 100 and server.statuses == [200] * 100
    assert s.stats("u", "create_tweet").rejected == 200


async def test_calls_admitted_on_a_guess_leave_once_a_smaller_limit_shows_their_wait() -> None:
    """The documented 100 let ten calls queue; X says 3 per window: seven leave, spending nothing."""
    clock = ManualClock(T0)
    server = WindowModel(clock, 3, 900.0)
    s = _scheduler(clock)

    results = await _concurrent(s, clock, server, 10, max_wait=5.0)
    assert sum(results) == 3 and server.statuses == [200] * 3
    assert clock.time() == T0  # refused at once, not after waiting


class FlakySettleStore(YieldingStore):
    """A networked-like store whose settles fail while it is down."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def settle(self, *args: Any) -> float | None:
        if self.down:
            raise asyncx.StoreUnavailable("down")
        return await super().settle(*args)


async def test_a_settle_the_store_missed_is_kept_and_applied_when_it_answers_again() -> None:
    """Otherwise the window stays "in flight" with no reset, and the budget stalls."""
    clock = ManualClock(T0)
    store = FlakySettleStore()
    s = Scheduler(
        {"create_tweet": asyncx.RateLimit(1, 10.0)}, clock=clock.time, sleep=clock.sleep, store=store
    )
    store.down = True
    headers = {
        "x-rate-limit-limit": "1",
        "x-rate-limit-remaining": "0",
        "x-rate-limit-reset": str(int(T0) + 10),
    }
    async with s.acquire("u", "create_tweet") as permit:
        permit.settle(_answer(asyncx.Response(201, headers, b"{}")))
    assert s.pending == 1
    spec = asyncx.WindowSpec("u\x1fcreate_tweet\x1fwindow", 1, 10.0)
    assert store.view([spec], T0, None)[0].room == 0  # still counted in flight
    store.down = False
    await clock.advance(0.3)  # the outbox retries with backoff
    assert s.pending == 0
    assert store.view([spec], T0 + 0.3, None)[0].reset == T0 + 10  # the answer did reach the store
    await clock.advance(10)
    async with s.acquire("u", "create_tweet", max_wait=0.0):  # the next window is open
        pass
    await s.aclose()


async def test_max_wait_admits_calls_queued_before_an_unknown_window_was_ever_seen() -> None:
    """Calls that queue behind the in-flight bound before their budget's first take: a window with no
    known limit must count as room then too, as it does once seen, not as one probe and a 900 s wait."""
    clock = ManualClock(T0)
    s = Scheduler(clock=clock.time, sleep=clock.sleep, store=STORE[0](), max_in_flight=1)
    async with s.acquire("other", "create_tweet", max_wait=0.0):  # holds the only slot
        waiting = [
            asyncio.create_task(s.acquire("u", "curate_collection", max_wait=5.0).__aenter__())
            for _ in range(3)
        ]
        await asyncio.sleep(0)
    assert s.stats("u", "curate_collection").rejected == 0
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


class _LateEmulator:
    """Answers as X's emulator (xdevplatform/playground) does: fixed windows of ``limit`` posts anchored
    at the first, a reset advertised to the second, windows that reopen ``late`` seconds after it, and
    429s with static headers (14 remaining, a reset a whole window away)."""

    def __init__(self, clock: ManualClock, limit: int = 3, window: float = 900.0, late: float = 0.9) -> None:
        self.clock, self.limit, self.window, self.late = clock, limit, window, late
        self.anchor: float | None = None
        self.used = 0
        self.refused = 0
        self.windows = 0

    async def __call__(self, request: asyncx.WireRequest) -> asyncx.Response:
        now = self.clock.time()
        if self.anchor is None or now >= self.anchor + self.window + self.late:
            self.anchor, self.used, self.windows = now, 0, self.windows + 1
        reset = math.ceil(self.anchor + self.window)
        date = formatdate(now, usegmt=True)
        if self.used >= self.limit:
            self.refused += 1
            static = {"x-rate-limit-limit": "15", "x-rate-limit-remaining": "14"}
            headers = {**static, "x-rate-limit-reset": str(int(now + 900)), "date": date}
            return asyncx.Response(429, headers, b'{"title": "Too Many Requests", "status": 429}')
        self.used += 1
        headers = {
            "x-rate-limit-limit": str(self.limit),
            "x-rate-limit-remaining": str(self.limit - self.used),
            "x-rate-limit-reset": str(reset),
            "date": date,
        }
        return asyncx.Response(201, headers, b'{"data": {"id": "1", "text": "x"}}')


async def test_a_server_whose_429s_lie_and_windows_reopen_late_costs_one_429_a_window() -> None:
    """The emulator's 429 says 14 remain and the reset is 15 minutes off: taken at its word, a budget
    parks a whole window after every reopen. Not taken so, each window costs at most one extra 429."""
    clock = ManualClock(T0)

    async def jump(seconds: float) -> None:
        await clock.advance(seconds)

    emulator = _LateEmulator(clock)
    bob = asyncx.BearerUser("t", "42")
    limits = {"create_tweet": asyncx.RateLimit(3, 900.0)}
    client = asyncx.Client(
        transport=asyncx.MockTransport(emulator), clock=clock.time, sleep=jump, rate_limits=limits
    )
    async with client:
        for i in range(9):  # three windows' worth
            await client.create_tweet(text=f"post {i}", user=bob)
    assert emulator.windows == 3
    assert emulator.refused <= 2  # at most one per reopened window
    # Three windows of 900 s, each reopening under a second late: never a whole window parked extra.
    assert clock.time() - T0 < 2 * 900 + 2 * 3


async def test_a_429_whose_reset_is_further_than_its_window_lasts_is_not_waited_for() -> None:
    """A 15-minute window cannot reopen in 22 hours: such a reset is dropped, and one probe goes a second
    later instead of the budget parking for a day."""
    clock = ManualClock(T0)
    sent: list[float] = []

    async def handler(request: asyncx.WireRequest) -> asyncx.Response:
        sent.append(clock.time())
        date = formatdate(clock.time(), usegmt=True)
        if len(sent) == 1:
            far = {"x-rate-limit-limit": "3", "x-rate-limit-remaining": "0", "date": date}
            far["x-rate-limit-reset"] = str(int(T0 + 80_000))
            return asyncx.Response(429, far, b'{"title": "Too Many Requests"}')
        return asyncx.Response(201, {"date": date}, b'{"data": {"id": "1", "text": "x"}}')

    async def jump(seconds: float) -> None:
        await clock.advance(seconds)

    limits = {"create_tweet": asyncx.RateLimit(3, 900.0)}
    client = asyncx.Client(
        transport=asyncx.MockTransport(handler), clock=clock.time, sleep=jump, rate_limits=limits
    )
    async with client:
        await client.create_tweet(text="x", user=asyncx.BearerUser("t", "42"))
    assert len(sent) == 2 and sent[1] - T0 < 10
