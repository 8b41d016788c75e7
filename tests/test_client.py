"""The client's send path: one "may have landed" idea per call, on_attempt, closing, misuse, bad answers."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable

import pytest

import asyncx

BOB = asyncx.BearerUser(access_token="t", user_id="42")
CREATED = asyncx.Response(201, {}, b'{"data": {"id": "1", "text": "hi"}}')
DUPLICATE = asyncx.Response(
    403, {}, json.dumps({"title": "Forbidden", "detail": "duplicate content", "type": "about:blank"}).encode()
)
NO_WAIT = asyncx.RetryPolicy(wait=lambda _: 0.0)  # type: ignore[arg-type,return-value]


def _client(
    handler: Callable[[asyncx.WireRequest], Awaitable[asyncx.Response]], **kw: object
) -> asyncx.Client:
    async def no_sleep(_: float) -> None:
        await asyncio.sleep(0)

    kw.setdefault("retry", NO_WAIT)
    kw.setdefault("sleep", no_sleep)
    return asyncx.Client(transport=asyncx.MockTransport(handler), **kw)  # type: ignore[arg-type]


def _steps(*steps: asyncx.Response | Exception) -> Callable[[asyncx.WireRequest], Awaitable[asyncx.Response]]:
    remaining = list(steps)

    async def handler(request: asyncx.WireRequest) -> asyncx.Response:
        step = remaining.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    return handler


def _status(status: int, headers: dict[str, str] | None = None) -> asyncx.Response:
    return asyncx.Response(status, headers or {}, b'{"title": "x", "type": "about:blank"}')


async def test_maybe_delivered_sticks_to_the_call_whatever_later_attempts_answer() -> None:
    """A 503 may have created the post; a later 400 does not undo that, and the error says so."""
    async with _client(_steps(_status(503), _status(400))) as client:
        with pytest.raises(asyncx.APIError) as info:
            await client.create_tweet(text="hi", user=BOB)
    assert info.value.status == 400 and info.value.maybe_delivered is True


async def test_an_error_before_anything_could_land_is_not_maybe_delivered() -> None:
    refused = asyncx.TransportError("refused", maybe_delivered=False)
    async with _client(_steps(refused, _status(400))) as client:
        with pytest.raises(asyncx.APIError) as info:
            await client.create_tweet(text="hi", user=BOB)
    assert info.value.maybe_delivered is False


async def test_a_resumed_call_is_maybe_delivered_from_the_start() -> None:
    async with _client(_steps(DUPLICATE)) as client:
        with pytest.raises(asyncx.AlreadyPosted) as info:
            await client.send(asyncx.CreateTweet(text="hi"), user=BOB, maybe_delivered=True)
    assert info.value.maybe_delivered is True


async def test_on_attempt_sees_every_attempt_and_what_earlier_ones_may_have_done() -> None:
    dropped = asyncx.TransportError("reset", maybe_delivered=True)
    seen: list[asyncx.Attempt] = []
    async with _client(_steps(_status(503), dropped, CREATED)) as client:
        await client.send(asyncx.CreateTweet(text="hi"), user=BOB, on_attempt=seen.append)
    assert seen == [
        asyncx.Attempt(1, False),
        asyncx.Attempt(2, True),
        asyncx.Attempt(3, True),
    ]


async def test_aclose_ends_calls_in_flight_and_backing_off_and_sends_nothing_after() -> None:
    """50 calls in flight and 50 backing off after a 503: aclose ends them all, nothing goes out after."""
    sent: list[str] = []
    hold = asyncio.Event()

    async def handler(request: asyncx.WireRequest) -> asyncx.Response:
        text = json.loads(request.body or b"{}")["text"]
        sent.append(text)
        if text.startswith("slow"):
            await hold.wait()  # in flight until the close
        return _status(503)

    async def forever(_: float) -> None:
        await asyncio.Event().wait()  # backing off until the close

    client = _client(handler, sleep=forever, rate_limits={"create_tweet": asyncx.RateLimit(1000, 900)})
    calls = [
        asyncio.ensure_future(client.create_tweet(text=f"{kind} {i}", user=BOB))
        for kind in ("slow", "fails")
        for i in range(50)
    ]
    while len(sent) < 100:
        await asyncio.sleep(0)
    await client.aclose()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, asyncx.ClientClosed) for r in results)
    assert all(r.maybe_delivered for r in results if isinstance(r, asyncx.XError))  # every one was written
    count = len(sent)
    hold.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(sent) == count == 100


async def test_aclose_ends_calls_waiting_for_budget_as_not_delivered() -> None:
    async with _client(_steps(CREATED), rate_limits={"create_tweet": asyncx.RateLimit(1, 900)}) as client:
        await client.create_tweet(text="first", user=BOB)
        waiting = asyncio.ensure_future(client.create_tweet(text="second", user=BOB))
        await asyncio.sleep(0.01)
    with pytest.raises(asyncx.ClientClosed) as info:
        await waiting
    assert info.value.maybe_delivered is False


async def test_a_call_on_a_closed_client_is_client_closed() -> None:
    client = _client(_steps())
    await client.aclose()
    with pytest.raises(asyncx.ClientClosed):
        await client.create_tweet(text="hi", user=BOB)


def test_a_call_from_another_event_loop_is_a_usage_error() -> None:
    client = _client(_steps(CREATED, CREATED))
    asyncio.run(client.create_tweet(text="one", user=BOB))
    errors: list[BaseException] = []

    def other() -> None:
        try:
            asyncio.run(client.create_tweet(text="two", user=BOB))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(5)
    assert len(errors) == 1 and isinstance(errors[0], asyncx.UsageError)
    assert "event loop" in str(errors[0])


@pytest.mark.parametrize("bad", ["5", -1, float("nan"), True, [1]])
async def test_a_bad_max_wait_is_a_validation_error(bad: object) -> None:
    async with _client(_steps()) as client:
        with pytest.raises(asyncx.ValidationError) as info:
            await client.create_tweet(text="hi", user=BOB, max_wait=bad)  # type: ignore[arg-type]
    assert info.value.field == "max_wait"


HOSTILE = [
    {"x-rate-limit-limit": "5", "x-rate-limit-remaining": "0", "x-rate-limit-reset": "2000000000"},
    {
        "x-user-limit-24hour-limit": "5",
        "x-user-limit-24hour-remaining": "0",
        "x-user-limit-24hour-reset": "2000000000",
    },
    {"x-rate-limit-limit": "5", "x-rate-limit-remaining": "0", "x-rate-limit-reset": "170000000\u00b9"},
    {"x-rate-limit-limit": "5", "x-rate-limit-remaining": "-1", "x-rate-limit-reset": "1700000100"},
    {"x-rate-limit-limit": "nan", "x-rate-limit-remaining": "0", "x-rate-limit-reset": "1700000100"},
    {"x-rate-limit-limit": "5", "x-rate-limit-remaining": "\u0660", "x-rate-limit-reset": "1700000100"},
    {"retry-after": "999999999"},
    {"retry-after": "-3"},
    {"retry-after": "inf"},
    {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"},
]


@pytest.mark.parametrize("headers", HOSTILE)
async def test_impossible_headers_never_become_a_wait(
    headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The post is made, the next call is not held, and one warning names the problem."""
    now = [1_700_000_000.0]
    created = asyncx.Response(201, headers, CREATED.body)
    handler = _steps(created, created, created)
    async with _client(handler, clock=lambda: now[0]) as client:
        with caplog.at_level(logging.WARNING, "asyncx.scheduler"):
            for _ in range(3):
                post = await asyncio.wait_for(client.create_tweet(text="hi", user=BOB, max_wait=1.0), 2)
                assert post.id == "1"
    warnings = [r for r in caplog.records if "impossible" in r.getMessage()]
    assert len(warnings) == 1  # once per budget, not per answer


async def test_a_429_is_an_empty_window_whatever_remaining_says() -> None:
    """X's emulator answers 429 with remaining 14: that must park the budget, not release the queue; and
    since such headers cannot be right, their reset is not waited for either: one probe goes shortly
    after, and the rest follow its answer."""
    now = [1_700_000_000.0]
    sent: list[float] = []
    headers = {
        "x-rate-limit-limit": "15",
        "x-rate-limit-remaining": "14",
        "x-rate-limit-reset": str(int(now[0]) + 60),
    }

    async def handler(request: asyncx.WireRequest) -> asyncx.Response:
        sent.append(now[0])
        if len(sent) == 1:
            return asyncx.Response(429, headers, b'{"title": "Too Many Requests"}')
        return CREATED

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    async with _client(handler, clock=lambda: now[0], sleep=sleep) as client:
        await asyncio.gather(*(client.create_tweet(text=f"p{i}", user=BOB) for i in range(5)))
    assert len(sent) == 6
    probe, rest = sent[1], sent[2:]
    assert 1_700_000_001.0 <= probe < 1_700_000_060.0  # a short wait, not the reset it cannot mean
    assert all(t >= probe for t in rest)  # the queue waited for the probe's answer


async def test_one_users_garbage_blocks_neither_another_user_nor_the_app() -> None:
    """Alice's answers claim her and the app's 24-hour windows are spent for ten years."""
    now = [1_700_000_000.0]
    poison = {
        "x-rate-limit-limit": "100",
        "x-rate-limit-remaining": "0",
        "x-rate-limit-reset": str(int(now[0]) + 10 * 365 * 86_400),
        "x-app-limit-24hour-limit": "10000",
        "x-app-limit-24hour-remaining": "0",
        "x-app-limit-24hour-reset": str(int(now[0]) + 10 * 365 * 86_400),
    }
    alice, bob = (
        asyncx.BearerUser(access_token="a", user_id="1"),
        asyncx.BearerUser(access_token="b", user_id="2"),
    )

    async def handler(request: asyncx.WireRequest) -> asyncx.Response:
        headers = poison if request.headers["Authorization"] == "Bearer a" else {}
        return asyncx.Response(201, headers, CREATED.body)

    async with _client(handler, clock=lambda: now[0]) as client:
        for _ in range(3):
            await asyncio.wait_for(client.create_tweet(text="a", user=alice, max_wait=1.0), 2)
            await asyncio.wait_for(client.create_tweet(text="b", user=bob, max_wait=1.0), 2)
    assert client.rate_stats().rejected == 0


async def test_a_send_that_never_reached_x_gives_its_budget_back() -> None:
    """A refused connection writes nothing: the retry finds the window's room untouched."""
    refused = asyncx.TransportError("refused", maybe_delivered=False)
    limits = {"create_tweet": asyncx.RateLimit(1, 900)}
    async with _client(_steps(refused, CREATED), rate_limits=limits) as client:
        await asyncio.wait_for(client.create_tweet(text="hi", user=BOB, max_wait=0.0), 2)
        assert client.rate_stats(BOB).sent == 1


async def test_a_failing_on_attempt_hook_sends_nothing_and_spends_nothing() -> None:
    def broken(_: asyncx.Attempt) -> None:
        raise OSError("journal disk full")

    limits = {"create_tweet": asyncx.RateLimit(1, 900)}
    async with _client(_steps(CREATED), rate_limits=limits) as client:
        with pytest.raises(OSError):
            await client.send(asyncx.CreateTweet(text="hi"), user=BOB, on_attempt=broken)
        await asyncio.wait_for(client.create_tweet(text="hi", user=BOB, max_wait=0.0), 2)


async def test_aclose_with_grace_lets_calls_on_the_wire_finish_and_sends_nothing_new() -> None:
    """Two calls on the wire are answered within the grace; the call waiting for budget ends unsent."""
    release = asyncio.Event()
    sent: list[str] = []

    async def handler(request: asyncx.WireRequest) -> asyncx.Response:
        sent.append(json.loads(request.body or b"{}")["text"])
        await release.wait()
        return CREATED

    limits = {"create_tweet": asyncx.RateLimit(2, 900)}
    client = _client(handler, rate_limits=limits)
    calls = [asyncio.ensure_future(client.create_tweet(text=f"p{i}", user=BOB)) for i in range(3)]
    while len(sent) < 2:
        await asyncio.sleep(0)
    closing = asyncio.ensure_future(client.aclose(grace=5.0))
    await asyncio.sleep(0)
    release.set()
    await closing
    first, second, third = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(first, asyncx.Tweet) and isinstance(second, asyncx.Tweet)
    assert isinstance(third, asyncx.ClientClosed) and third.maybe_delivered is False
    assert sent == ["p0", "p1"]
