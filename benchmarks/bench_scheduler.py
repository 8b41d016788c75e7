"""Scheduler cost: CPU per acquire with 1, 1,000 and 100,000 users holding budgets; memory per idle budget.

Each acquire is a full ``async with scheduler.acquire(...) as permit: permit.settle(response)`` with X's
rate-limit headers on the response, on a fake clock, so only the scheduler's own work is timed. The
baseline in the same run is a bare ``async with asyncio.Semaphore`` (the least any limiter can cost).

    python benchmarks/bench_scheduler.py
Targets: under 20 us per acquire at 100,000 users; at most 400 bytes per idle budget; idle budgets expire.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from email.utils import formatdate

import asyncx
from asyncx import MemoryStore
from asyncx._ratelimit import Scheduler, ServerAnswer, read_answer
from asyncx.testing import ManualClock

T0 = 1_700_000_000.0
LIMIT = asyncx.RateLimit(1_000_000, 900.0)


def response(clock: ManualClock) -> ServerAnswer:
    """X's answer, read once as the client reads each one (reading it is timed in bench_client_cpu)."""
    headers = {
        "x-rate-limit-limit": "1000000",
        "x-rate-limit-remaining": "999000",
        "x-rate-limit-reset": str(int(clock.time()) + 900),
        "date": formatdate(clock.time(), usegmt=True),
    }
    return read_answer(201, headers, clock.time())


async def per_acquire(users: int, rounds: int) -> float:
    clock = ManualClock(T0)
    s = Scheduler({"create_tweet": LIMIT, "app:create_tweet": []}, clock=clock.time, sleep=clock.sleep)
    resp = response(clock)
    names = [f"user{i}" for i in range(users)]
    for name in names:  # every user holds a budget
        async with s.acquire(name, "create_tweet") as permit:
            permit.settle(resp)
    calls = max(rounds, users)
    gc.collect()
    start = time.process_time()
    for i in range(calls):
        async with s.acquire(names[i % users], "create_tweet") as permit:
            permit.settle(resp)
    return (time.process_time() - start) / calls * 1e6


async def semaphore_baseline(calls: int) -> float:
    sem = asyncio.Semaphore(256)
    start = time.process_time()
    for _ in range(calls):
        async with sem:
            pass
    return (time.process_time() - start) / calls * 1e6


async def idle_memory(users: int) -> tuple[float, int, int, int, int]:
    clock = ManualClock(T0)
    limits: dict[str, list[asyncx.RateLimit]] = {
        "create_tweet": [asyncx.RateLimit(100, 900.0)],
        "app:create_tweet": [],
    }
    store = MemoryStore()

    def wall() -> float:
        return clock.time() + 0.0  # a new float per reading, as time.time() gives

    s = Scheduler(limits, clock=wall, sleep=clock.sleep, store=store)
    resp = response(clock)
    names = [f"user{i}" for i in range(users)]  # made before measuring: callers own their names
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for name in names:
        async with s.acquire(name, "create_tweet") as permit:
            permit.settle(resp)
    gc.collect()
    per_budget = (tracemalloc.get_traced_memory()[0] - before) / users
    tracemalloc.stop()
    held, windows = len(s), len(store)
    await clock.advance(901)  # every window has ended: the budgets are idle and hold nothing
    for i in range(users):
        async with s.acquire(f"later{i}", "create_tweet"):
            pass
    return per_budget, held, len(s), windows, len(store)


async def backlog(calls: int) -> float:
    """CPU per call (us) to queue ``calls`` calls behind one budget with no room: O(1) means flat."""
    clock = ManualClock(T0)
    s = Scheduler({"create_tweet": asyncx.RateLimit(1, 900.0)}, clock=clock.time, sleep=clock.sleep)
    async with s.acquire("u", "create_tweet"):
        pass
    gc.collect()
    gc.disable()  # the collector's passes over many live tasks would hide what the scheduler costs
    start = time.process_time()
    tasks = [asyncio.ensure_future(s.acquire("u", "create_tweet").__aenter__()) for _ in range(calls)]
    while s.waiting < calls:
        await asyncio.sleep(0)
    elapsed = time.process_time() - start
    gc.enable()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await s.aclose()
    return elapsed / calls * 1e6


async def main() -> None:
    base = await semaphore_baseline(200_000)
    print(f"baseline asyncio.Semaphore acquire/release: {base:6.2f} us")
    for users in (1, 1_000, 100_000):
        us = await per_acquire(users, 200_000)
        ratio = us / base
        print(
            f"acquire+settle with {users:>7,} users holding budgets: {us:6.2f} us  ({ratio:5.1f}x semaphore)"
        )
    small, large = await backlog(2_500), await backlog(20_000)
    print(f"queueing behind one budget: {small:.1f} us per call at 2,500, {large:.1f} us at 20,000")
    print(f"  (ratio {large / small:.2f}: O(1) per call keeps it near 1)")
    per_budget, held, after, windows, windows_after = await idle_memory(100_000)
    print(f"memory per idle budget: {per_budget:,.0f} bytes (100,000 budgets)")
    print(f"idle expiry: {held:,} budgets held; after their windows ended and 100,000 more came: {after:,}")
    print(f"  and windows in the memory store: {windows:,}, then {windows_after:,}")
    print("  (without expiry it would be 200,000)")
    print("targets: < 20 us per acquire at 100,000 users; <= 400 bytes per idle budget; expiry bounds memory")


if __name__ == "__main__":
    asyncio.run(main())
