"""End to end over real sockets against asyncx.testing.FakeX, and refusals that never reach a server."""

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import asyncx
from asyncx.testing import FakeX

from .strategies import bad_post_kwargs

BOB = asyncx.BearerUser(access_token="bobtoken", user_id="2244994945")


async def test_post_bookmark_and_collection_over_real_sockets() -> None:
    async with FakeX() as fake:
        alice, bob = fake.users.create("alice"), fake.users.create("bob")
        async with fake.client() as client:
            post = await client.create_tweet(text="hello", user=alice.oauth1)
            assert post.text == "hello"
            reply = await client.create_tweet(
                text="hi",
                user=bob.bearer,
                reply={"in_reply_to_tweet_id": post.id},
                poll={"options": ["a", "b"], "duration_minutes": 60},
            )
            assert await client.bookmark(post.id, user=bob.bearer) is True
            res = await client.add_collection_entry("custom-1", "9", user=alice.oauth1)
            assert res.errors == (asyncx.CollectionError("add", "9", "not_found"),)
            res = await client.curate_collection(
                "custom-1", [{"op": "add", "tweet_id": reply.id}], user=alice.oauth1
            )
            assert res.ok
            with pytest.raises(asyncx.DuplicateContent):
                await client.create_tweet(text="hello", user=alice.bearer)
        assert fake.bookmarks[bob.user_id] == {post.id}
        assert fake.collections["custom-1"] == [reply.id]
        assert [e.endpoint for e in fake.log] == [
            "create_tweet",
            "create_tweet",
            "bookmark",
            "add_collection_entry",
            "curate_collection",
            "create_tweet",
        ]


async def test_wrong_auth_kind_is_refused_before_sending() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        async with fake.client() as client:
            with pytest.raises(asyncx.ValidationError) as info:
                await client.bookmark("1", user=alice.oauth1)  # type: ignore[arg-type]
            assert info.value.field == "user"
            with pytest.raises(asyncx.ValidationError):
                await client.add_collection_entry("custom-1", "1", user=alice.bearer)  # type: ignore[arg-type]
            with pytest.raises(asyncx.ValidationError):
                await client.curate_collection(
                    "custom-1",
                    [{"op": "add", "tweet_id": "1"}],
                    user=alice.bearer,  # type: ignore[arg-type]
                )
        assert fake.log == []


async def test_oauth1_user_needs_consumer_keys() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        async with asyncx.Client(base_url=fake.base_url) as client:
            with pytest.raises(asyncx.ValidationError, match="consumer_key"):
                await client.create_tweet(text="x", user=alice.oauth1)
        assert fake.log == []


async def test_connection_refused_is_transport_error_not_sent() -> None:
    async with asyncx.Client(base_url="http://127.0.0.1:9", retry=None) as client:
        with pytest.raises(asyncx.TransportError) as info:
            await client.create_tweet(text="x", user=BOB)
    assert info.value.maybe_delivered is False
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
