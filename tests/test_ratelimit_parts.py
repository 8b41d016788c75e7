"""The rate-limit parts alone: fair queues, wake-ups, news of answers, the outbox, reading answers."""

from __future__ import annotations

import asyncio

import asyncx
from asyncx._ratelimit import read_answer
from asyncx._ratelimit._news import News
from asyncx._ratelimit._outbox import Outbox
from asyncx._ratelimit._queues import Ring, Waiters
from asyncx._ratelimit._wakeups import Wakeups
from asyncx.testing import ManualClock

T0 = 1_700_000_000.0


async def test_waiters_count_live_calls_in_constant_time_as_they_come_and_go() -> None:
    """A cancelled call stops counting once, whether the queue passes over it or its task leaves first."""
    loop = asyncio.get_running_loop()
    waiters: Waiters[int] = Waiters()
    futures = [loop.create_future() for _ in range(3)]
    for f in futures:
        waiters.push(f, None)
    futures[1].cancel()
    assert waiters.pop() is futures[0] and waiters.live == 2
    assert waiters.pop() is futures[2] and waiters.live == 0  # passed over the cancelled one
    waiters.left(futures[1])  # its task hears of the cancel later: not counted twice
    assert waiters.live == 0 and waiters.pop() is None
    late = loop.create_future()
    waiters.push(late, None)
    late.cancel()
    waiters.left(late)  # its task first, this time
    assert waiters.live == 0 and waiters.pop() is None


async def test_waiters_whose_deadline_comes_before_the_wake_leave_with_rate_limited() -> None:
    loop = asyncio.get_running_loop()
    waiters: Waiters[int] = Waiters()
    patient, hurried, unbounded = loop.create_future(), loop.create_future(), loop.create_future()
    waiters.push(patient, T0 + 100)
    waiters.push(hurried, T0 + 5)
    waiters.push(unbounded, None)
    assert list(waiters.expire(T0 + 10)) == [hurried]
    assert isinstance(hurried.exception(), asyncx.RateLimited) and waiters.live == 2
    assert waiters.pop() is patient and waiters.pop() is unbounded


def test_the_ring_keeps_a_slot_for_whoever_it_hands_one_to() -> None:
    ring: Ring[str] = Ring()
    ring.join("a")
    ring.join("b")
    assert ring.next() == "a" and ring.kept == 1
    ring.used()
    assert ring.next() == "b" and ring.next() is None and ring.kept == 1


async def test_wakeups_fire_in_deadline_order_whatever_the_order_scheduled() -> None:
    clock = ManualClock(T0)
    woken: list[tuple[str, float]] = []
    wakeups: Wakeups[str] = Wakeups(clock.time, clock.sleep, lambda item, at: woken.append((item, at)))
    wakeups.schedule(T0 + 5, "late")
    wakeups.schedule(T0 + 1, "early")
    assert wakeups.first() == T0 + 1
    await clock.advance(2)
    assert woken == [("early", T0 + 1)]
    await clock.advance(5)
    assert woken == [("early", T0 + 1), ("late", T0 + 5)]
    wakeups.aclose()


def test_news_that_came_while_the_store_answered_is_not_waited_for() -> None:
    released: list[tuple[str, str]] = []
    news: News[str] = News(lambda item, key: released.append((item, key)))
    asked_at = news.count
    news.heard("w")  # overtakes the store's reply
    assert news.wait("w", "budget", asked_at) is False
    assert news.wait("w", "budget", news.count) is True
    news.heard_any(["other", "w"])
    assert released == [("budget", "w")]
    news.wait("x", "b2", news.count)
    news.heard(None)  # news may have been missed: everyone asks again
    assert released[-1] == ("b2", "x")


async def test_the_outbox_replays_in_order_once_the_store_answers() -> None:
    clock = ManualClock(T0)
    outbox = Outbox(clock.sleep)
    done: list[int] = []
    down = [True]

    def replay(n: int):  # type: ignore[no-untyped-def]
        async def call() -> None:
            if down[0]:
                raise asyncx.StoreUnavailable("down")
            done.append(n)

        return call

    outbox.keep(replay(1))
    outbox.keep(replay(2))
    await clock.advance(1)
    assert done == [] and len(outbox) == 2
    down[0] = False
    await clock.advance(10)
    assert done == [1, 2] and len(outbox) == 0
    await outbox.aclose()


_ROOM = {"x-rate-limit-limit": "15", "x-rate-limit-remaining": "14", "x-rate-limit-reset": "1700000900"}


def test_a_429_reads_as_an_empty_window_whose_reset_is_not_taken_at_its_word() -> None:
    """A 429 that says 14 of 15 remain (X's emulator sends such static headers, with a reset a whole
    window away) cannot be right: the window is empty, and its reset is dropped, saying so."""
    refused = read_answer(429, _ROOM, T0)
    assert refused.limits["window"].remaining == 0 and refused.limits["window"].reset == 0
    assert refused.problems and "reset 1700000900 ignored" in refused.problems[0]
    answered = read_answer(200, _ROOM, T0)
    assert answered.limits["window"] == (15, 14, 1700000900) and answered.problems == ()
    honest = read_answer(429, {**_ROOM, "x-rate-limit-remaining": "0"}, T0)
    assert honest.limits["window"] == (15, 0, 1700000900) and honest.problems == ()


def test_reading_an_answer_never_raises_and_names_what_it_dropped() -> None:
    headers = {
        "date": "not a date",
        "x-rate-limit-limit": "1" * 30,
        "x-rate-limit-remaining": "0",
        "x-rate-limit-reset": "1700000900",
        "retry-after": "nan",
    }
    answer = read_answer(429, headers, T0)
    assert answer.limits == {} and answer.retry_after is None and answer.date is None
    assert len(answer.problems) == 3
