"""The transport alone, against a real aiohttp server: redirects, timeouts, TLS, closed sessions."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

import asyncx
from asyncx._transport import AiohttpTransport, WireRequest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _post(url: str) -> WireRequest:
    return WireRequest("POST", url + "/2/tweets", {"Content-Type": "application/json"}, b'{"text":"hi"}')


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_returned_never_followed(
    serve: Callable[[Handler], Awaitable[str]], status: int
) -> None:
    """A 3xx must not become a GET elsewhere (a post reported made) nor replay the post to another host."""
    elsewhere: list[str] = []

    async def other(request: web.Request) -> web.Response:
        elsewhere.append(request.method)
        return web.json_response({"data": {"id": "666", "text": "hi"}}, status=201)

    other_url = await serve(other)

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": other_url + "/2/tweets"})

    url = await serve(redirect)
    transport = AiohttpTransport()
    try:
        response = await transport.send(_post(url))
    finally:
        await transport.aclose()
    assert response.status == status and elsewhere == []


async def test_a_redirect_is_an_api_error_from_the_client(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": "https://evil.example/2/tweets"})

    url = await serve(redirect)
    bob = asyncx.BearerUser(access_token="t", user_id="1")
    async with asyncx.Client(base_url=url) as client:
        with pytest.raises(asyncx.APIError) as info:
            await client.create_tweet(text="hi", user=bob)
    assert info.value.status == 307 and "never follows" in str(info.value)
    assert info.value.maybe_delivered is False


async def test_a_user_sessions_own_timeout_is_honoured_unless_timeouts_are_given(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """A given session keeps its own timeout; ``timeouts=`` given beside it is honoured, never ignored."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    url = await serve(slow)
    loop = asyncio.get_running_loop()
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as short,
        aiohttp.ClientSession() as plain,
    ):
        for transport in (
            AiohttpTransport(short),  # the session's 0.2 s
            AiohttpTransport(plain, timeouts=asyncx.Timeouts(total=0.2)),
        ):
            started = loop.time()
            with pytest.raises(asyncx.TransportError) as info:
                await transport.send(_post(url))
            assert loop.time() - started < 2.0
            assert info.value.maybe_delivered is True
    async with aiohttp.ClientSession() as given:
        client = asyncx.Client(session=given, timeouts=asyncx.Timeouts(total=0.2), base_url=url, retry=None)
        async with client:
            started = loop.time()
            with pytest.raises(asyncx.TransportError):
                await client.create_tweet(text="x", user=asyncx.BearerUser("t", "1"))
            assert loop.time() - started < 2.0


async def test_the_timeout_counts_from_the_write_not_the_wait_for_a_connection(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """One pooled connection, three requests of 0.3 s each: each waits for the connection, none times out."""

    async def steady(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.json_response({"ok": True})

    url = await serve(steady)
    transport = AiohttpTransport(timeouts=asyncx.Timeouts(connect=1.0, total=0.6), max_connections=1)
    try:
        responses = await asyncio.gather(*(transport.send(_post(url)) for _ in range(3)))
    finally:
        await transport.aclose()
    assert [r.status for r in responses] == [200, 200, 200]


async def test_an_answer_slower_than_the_timeout_is_a_maybe_delivered_transport_error(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    url = await serve(slow)
    transport = AiohttpTransport(timeouts=asyncx.Timeouts(total=0.2))
    try:
        with pytest.raises(asyncx.TransportError) as info:
            await transport.send(_post(url))
    finally:
        await transport.aclose()
    assert info.value.maybe_delivered is True and info.value.retryable is True


async def test_a_certificate_failure_is_final_and_not_retried() -> None:
    """A TLS server whose certificate nobody trusts: one attempt, a non-retryable error."""
    from asyncx.testing import FakeX

    async with FakeX(tls=True) as fake:
        fake.users.create("alice")
        attempts: list[asyncx.Attempt] = []
        untrusting = ssl.create_default_context()  # does not trust FakeX's test CA
        async with asyncx.Client(base_url=fake.base_url, ssl=untrusting) as client:
            bob = fake.users["alice"].bearer
            with pytest.raises(asyncx.TransportError) as info:
                await client.send(asyncx.CreateTweet(text="hi"), user=bob, on_attempt=attempts.append)
    assert info.value.retryable is False and info.value.maybe_delivered is False
    assert len(attempts) == 1


async def test_a_session_closed_under_the_client_is_a_usage_error(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({})

    url = await serve(ok)
    session = aiohttp.ClientSession()
    await session.close()
    transport = AiohttpTransport(session)
    with pytest.raises(asyncx.UsageError):
        await transport.send(_post(url))


async def test_a_closed_transport_opens_no_new_session(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({})

    url = await serve(ok)
    transport = AiohttpTransport()
    await transport.send(_post(url))
    await transport.aclose()
    with pytest.raises(asyncx.ClientClosed):
        await transport.send(_post(url))
    assert transport._session is None


def test_oauth1_signs_an_ipv6_host_with_brackets() -> None:
    """RFC 5849 3.4.1.2: the base string URI keeps the host as in the request, brackets included."""
    from asyncx._auth import _base_uri

    assert _base_uri("http://[::1]:8080/1.1/x.json") == "http%3A%2F%2F%5B%3A%3A1%5D%3A8080%2F1.1%2Fx.json"
    assert _base_uri("https://[2001:DB8::1]/a") == "https%3A%2F%2F%5B2001%3Adb8%3A%3A1%5D%2Fa"


async def test_a_body_that_trickles_in_is_cut_at_the_timeout(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """Each byte arrives within the read timeout, but the whole answer takes too long."""

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=201)
        await response.prepare(request)
        for _ in range(40):
            await response.write(b" ")
            await asyncio.sleep(0.05)
        return response

    url = await serve(trickle)
    transport = AiohttpTransport(timeouts=asyncx.Timeouts(total=0.5))
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(asyncx.TransportError) as info:
            await transport.send(_post(url))
    finally:
        await transport.aclose()
    assert loop.time() - started < 1.5 and info.value.maybe_delivered is True


async def test_a_redirected_token_refresh_sends_the_refresh_token_nowhere(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """A 307 from the token endpoint must not carry the refresh token elsewhere, nor adopt its tokens."""
    elsewhere: list[bytes] = []

    async def thief(request: web.Request) -> web.Response:
        elsewhere.append(await request.read())
        return web.json_response({"access_token": "stolen", "refresh_token": "stolen-r"})

    thief_url = await serve(thief)

    async def api(request: web.Request) -> web.Response:
        if request.path == "/2/oauth2/token":
            return web.Response(status=307, headers={"Location": thief_url + "/2/oauth2/token"})
        return web.json_response({"title": "Unauthorized", "status": 401}, status=401)

    url = await serve(api)
    refreshed: list[asyncx.BearerUser] = []
    bob = asyncx.BearerUser(
        access_token="old", user_id="1", refresh_token="r1", client_id="c", on_refresh=refreshed.append
    )
    async with asyncx.Client(base_url=url, retry=None) as client:
        with pytest.raises(asyncx.Unauthorized):
            await client.create_tweet(text="hi", user=bob)
    assert elsewhere == [] and refreshed == []
    assert bob.access_token == "old" and bob.refresh_token == "r1"


async def test_connection_slots_are_handed_on_in_order_and_never_lost_to_a_cancelled_wait() -> None:
    from asyncx._transport import _Slots

    slots = _Slots(1)
    assert slots.take() and not slots.take()
    first = asyncio.ensure_future(slots.wait())
    gone = asyncio.ensure_future(slots.wait())
    last = asyncio.ensure_future(slots.wait())
    await asyncio.sleep(0)
    gone.cancel()  # left while waiting: skipped
    slots.release()  # handed to the first waiter
    await first
    first_cancelled_late = asyncio.ensure_future(slots.wait())
    await asyncio.sleep(0)
    slots.release()  # to ``last``
    await last
    slots.release()  # to the next waiter, which is cancelled as it is handed the slot
    first_cancelled_late.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first_cancelled_late
    assert gone.cancelled()
    assert slots.take()  # the slot it was handed came back
    assert not slots.take()
