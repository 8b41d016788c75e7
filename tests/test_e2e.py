"""End to end over real sockets: a small aiohttp server on loopback checks what the client sends."""

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings

import asyncx

from .strategies import bad_post_kwargs

BOB = asyncx.BearerUser(access_token="bobtoken", user_id="2244994945")
ALICE = asyncx.OAuth1User(access_token="111-alicetoken", access_token_secret="alicesecret")


class TinyX:
    """Just enough of X to see requests arrive: posts, duplicates, bookmarks and collections."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.texts: set[str] = set()
        app = web.Application()
        app.router.add_post("/2/tweets", self.tweets)
        app.router.add_post("/2/users/{id}/bookmarks", self.bookmark)
        app.router.add_post("/1.1/collections/entries/add.json", self.collection_add)
        self.app = app

    async def _record(self, request: web.Request) -> bytes:
        body = await request.read()
        self.requests.append((request.path, dict(request.headers), body))
        return body

    async def tweets(self, request: web.Request) -> web.Response:
        data = json.loads(await self._record(request))
        if data.get("text") in self.texts:
            return web.json_response(
                {
                    "title": "Forbidden",
                    "type": "about:blank",
                    "status": 403,
                    "detail": "You are not allowed to create a Tweet with duplicate content.",
                },
                status=403,
            )
        self.texts.add(data.get("text"))
        return web.json_response({"data": {"id": str(len(self.texts)), "text": data.get("text")}}, status=201)

    async def bookmark(self, request: web.Request) -> web.Response:
        await self._record(request)
        if (
            request.headers.get("Authorization") != "Bearer bobtoken"
            or request.match_info["id"] != BOB.user_id
        ):
            return web.json_response(
                {"title": "Unauthorized", "type": "about:blank", "status": 401}, status=401
            )
        return web.json_response({"data": {"bookmarked": True}})

    async def collection_add(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.requests.append((request.path, dict(request.headers), b""))
        reason = [{"change": {"op": "add", "tweet_id": form["tweet_id"]}, "reason": "not_found"}]
        return web.json_response(
            {"objects": {}, "response": {"errors": reason if form["tweet_id"] == "9" else []}}
        )


@pytest.fixture
async def tiny() -> AsyncIterator[tuple[TinyX, str]]:
    server = TinyX()
    runner = web.AppRunner(server.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield server, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_post_bookmark_and_collection_over_real_sockets(tiny: tuple[TinyX, str]) -> None:
    server, base = tiny
    async with asyncx.Client(consumer_key="ck", consumer_secret="cs", base_url=base) as client:
        post = await client.create_tweet(text="hello", user=ALICE)
        assert post.text == "hello" and post.id == "1"
        assert await client.bookmark(post.id, user=BOB) is True
        res = await client.add_collection_entry("custom-1", "9", user=ALICE)
        assert res.errors == (asyncx.CollectionError("add", "9", "not_found"),)
        with pytest.raises(asyncx.DuplicateContent):
            await client.create_tweet(text="hello", user=BOB)
    paths = [p for p, _, _ in server.requests]
    assert paths == [
        "/2/tweets",
        f"/2/users/{BOB.user_id}/bookmarks",
        "/1.1/collections/entries/add.json",
        "/2/tweets",
    ]
    assert server.requests[0][1]["Authorization"].startswith("OAuth ")


async def test_wrong_auth_kind_is_refused_before_sending(tiny: tuple[TinyX, str]) -> None:
    server, base = tiny
    async with asyncx.Client(consumer_key="ck", consumer_secret="cs", base_url=base) as client:
        with pytest.raises(asyncx.ValidationError) as info:
            await client.bookmark("1", user=ALICE)  # type: ignore[arg-type]
        assert info.value.field == "user"
        with pytest.raises(asyncx.ValidationError):
            await client.add_collection_entry("custom-1", "1", user=BOB)  # type: ignore[arg-type]
        with pytest.raises(asyncx.ValidationError):
            await client.curate_collection("custom-1", [{"op": "add", "tweet_id": "1"}], user=BOB)  # type: ignore[arg-type]
    assert server.requests == []


async def test_oauth1_user_needs_consumer_keys(tiny: tuple[TinyX, str]) -> None:
    server, base = tiny
    async with asyncx.Client(base_url=base) as client:
        with pytest.raises(asyncx.ValidationError, match="consumer_key"):
            await client.create_tweet(text="x", user=ALICE)
    assert server.requests == []


async def test_connection_refused_is_transport_error_not_sent() -> None:
    async with asyncx.Client(base_url="http://127.0.0.1:9") as client:
        with pytest.raises(asyncx.TransportError) as info:
            await client.create_tweet(text="x", user=BOB)
    assert info.value.maybe_sent is False
    assert "bobtoken" not in str(info.value)


@pytest.mark.parametrize("url", ["http://api.twitter.com", "http://10.0.0.1:80", "ftp://x", "api.x.com"])
def test_plain_http_refused_except_loopback(url: str) -> None:
    with pytest.raises(asyncx.ValidationError) as info:
        asyncx.Client(base_url=url)
    assert info.value.field == "base_url"


@pytest.mark.parametrize(
    "url", ["http://localhost:8080", "http://127.0.0.5", "http://[::1]:80", "https://api.x.com"]
)
def test_loopback_and_https_allowed(url: str) -> None:
    assert asyncx.Client(base_url=url).base_url == url


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60, deadline=None)
@given(kwargs=bad_post_kwargs)
async def test_random_bad_posts_never_reach_the_server(kwargs: dict[str, Any]) -> None:
    sent: list[asyncx.WireRequest] = []

    async def handler(request: asyncx.WireRequest) -> asyncx.Response:
        sent.append(request)
        return asyncx.Response(201, {}, b'{"data": {"id": "1", "text": "x"}}')

    async with asyncx.Client(transport=asyncx.MockTransport(handler)) as client:
        with pytest.raises(asyncx.ValidationError):
            await client.create_tweet(user=BOB, **kwargs)
    assert sent == []
