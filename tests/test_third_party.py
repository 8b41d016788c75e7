"""Unmodified third-party clients drive FakeX and see X's behaviour: tweepy (``Client`` and ``AsyncClient``)
and, from Node, twitter-api-v2.

The clients keep their hard-coded hosts (api.twitter.com, api.x.com). They reach the fake by pinning: a
requests transport adapter or an aiohttp resolver sends those hosts to the fake's port, and the fake's
certificate is valid for them; Node gets an ``https.Agent`` that does the same. Nothing in their code is
patched.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
import requests
import requests.adapters
import tweepy
import tweepy.asynchronous
from aiohttp.abc import AbstractResolver, ResolveResult

from asyncx import RateLimit
from asyncx.testing import FakeUser, FakeX

X_HOSTS = ("api.twitter.com", "api.x.com")
NODE_DIR = Path(__file__).parent / "node"
T = TypeVar("T")


class _PinnedAdapter(requests.adapters.HTTPAdapter):
    """Sends requests for X's hosts to the fake's port; ``Host`` keeps the name X signs and routes by."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        if parts.hostname in X_HOSTS:
            request.headers["Host"] = parts.hostname
            request.headers["Connection"] = "close"  # nothing left open in a thread when the fake stops
            request.url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.port}"))
        return super().send(request, *args, **kwargs)


class _PinnedResolver(AbstractResolver):
    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        assert host in X_HOSTS, host
        info = ResolveResult(
            hostname=host, host="127.0.0.1", port=self.port, family=socket.AF_INET, proto=0, flags=0
        )
        return [info]

    async def close(self) -> None:
        return None


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeX]:
    limits = {"users_me": RateLimit(75, 900.0), "create_tweet": RateLimit(100, 900.0)}
    async with FakeX(tls=True, limits=limits) as fake:
        assert fake.certificate is not None
        (tmp_path / "ca.pem").write_text(fake.certificate)
        yield fake


def _port(fake: FakeX) -> int:
    return int(fake.base_url.rsplit(":", 1)[1])


@pytest.fixture
def sync_client(fake: FakeX, tmp_path: Path) -> Iterator[Callable[..., tweepy.Client]]:
    """Makes tweepy ``Client``s pinned to the fake; their sessions close before the fake stops."""
    made: list[tweepy.Client] = []

    def make(user: FakeUser | None, **kwargs: Any) -> tweepy.Client:
        if user is not None:
            kwargs.update(
                bearer_token=user.bearer.access_token,
                consumer_key=fake.consumer_key,
                consumer_secret=fake.consumer_secret,
                access_token=user.oauth1.access_token,
                access_token_secret=user.oauth1.access_token_secret,
            )
        client = tweepy.Client(**kwargs)
        _pin(client.session, fake, tmp_path)
        made.append(client)
        return client

    yield make
    for client in made:
        client.session.close()


def _pin(session: requests.Session, fake: FakeX, tmp_path: Path) -> None:
    session.mount("https://", _PinnedAdapter(_port(fake)))
    session.verify = str(tmp_path / "ca.pem")
    session.trust_env = False  # else REQUESTS_CA_BUNDLE and proxy variables override the two lines above


async def _in_thread(call: Callable[[], T]) -> T:
    """A blocking client call, off the loop the fake serves on."""
    return await asyncio.to_thread(call)


async def test_tweepy_client_sees_xs_behaviour(
    fake: FakeX, sync_client: Callable[..., tweepy.Client]
) -> None:
    alice = fake.users.create("alice")
    client = sync_client(alice)
    me = await _in_thread(lambda: client.get_me(user_auth=True))
    assert (me.data.id, me.data.username) == (int(alice.user_id), "alice")

    post = await _in_thread(lambda: client.create_tweet(text="hello from tweepy", user_auth=True))
    reply = await _in_thread(
        lambda: client.create_tweet(text="a reply", in_reply_to_tweet_id=post.data["id"], user_auth=False)
    )
    poll = await _in_thread(
        lambda: client.create_tweet(poll_options=["yes", "no"], poll_duration_minutes=60, user_auth=True)
    )
    assert fake.posts[reply.data["id"]].in_reply_to_tweet_id == post.data["id"]
    assert fake.posts[poll.data["id"]].poll_options == ("yes", "no")

    marked = await _in_thread(
        lambda: client.bookmark(post.data["id"])
    )  # OAuth 2.0: get_me, then the bookmark
    assert marked.data == {"bookmarked": True} and fake.bookmarks[alice.user_id] == {post.data["id"]}
    with pytest.raises(tweepy.Forbidden) as refused:
        await _in_thread(
            lambda: client.request(
                "POST",
                f"/2/users/{alice.user_id}/bookmarks",
                json={"tweet_id": post.data["id"]},
                user_auth=True,
            )
        )
    assert refused.value.response.json()["title"] == "Unsupported Authentication"
    assert "OAuth 1.0a User Context is forbidden" in str(refused.value)

    with pytest.raises(tweepy.Forbidden) as duplicate:
        await _in_thread(lambda: client.create_tweet(text="hello from tweepy", user_auth=True))
    assert "duplicate content" in str(duplicate.value)

    with pytest.raises(tweepy.NotFound):
        await _in_thread(lambda: client.bookmark("42"))
    stranger = sync_client(None, bearer_token="not-a-token")
    with pytest.raises(tweepy.Unauthorized):
        await _in_thread(lambda: stranger.get_me(user_auth=False))


async def test_tweepy_reads_the_429_reset_and_waits_it_out(
    fake: FakeX, sync_client: Callable[..., tweepy.Client]
) -> None:
    fake.limits["create_tweet"] = RateLimit(1, 1.0)
    alice = fake.users.create("alice")
    client = sync_client(alice)
    await _in_thread(lambda: client.create_tweet(text="one", user_auth=True))
    with pytest.raises(tweepy.TooManyRequests) as limited:
        await _in_thread(lambda: client.create_tweet(text="two", user_auth=True))
    reset = int(limited.value.response.headers["x-rate-limit-reset"])
    assert limited.value.reset_time == reset and limited.value.api_messages == ["Too Many Requests"]
    waiting = sync_client(alice, wait_on_rate_limit=True)
    await _in_thread(
        lambda: waiting.create_tweet(text="two", user_auth=True)
    )  # slept to the reset, then sent
    assert [p.text for p in fake.posts_by(alice)] == ["one", "two"] and fake.count(429) == 2


async def test_tweepy_async_client_sees_xs_behaviour(fake: FakeX, tmp_path: Path) -> None:
    alice = fake.users.create("alice")
    connector = aiohttp.TCPConnector(resolver=_PinnedResolver(_port(fake)), ssl=fake.ssl_context)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = tweepy.asynchronous.AsyncClient(
            bearer_token=alice.bearer.access_token,
            consumer_key=fake.consumer_key,
            consumer_secret=fake.consumer_secret,
            access_token=alice.oauth1.access_token,
            access_token_secret=alice.oauth1.access_token_secret,
        )
        client.session = session
        me = await client.get_me()
        assert me.data.username == "alice"
        post = await client.create_tweet(text="hello from AsyncClient", user_auth=True)
        await client.create_tweet(text="a reply", in_reply_to_tweet_id=post.data["id"])
        await client.create_tweet(poll_options=["a", "b"], poll_duration_minutes=5, user_auth=True)
        assert (await client.bookmark(post.data["id"])).data == {"bookmarked": True}
        with pytest.raises(tweepy.Forbidden, match=r"OAuth 1\.0a User Context is forbidden"):
            await client.request(
                "POST",
                f"/2/users/{alice.user_id}/bookmarks",
                params={},
                json={"tweet_id": post.data["id"]},
                user_auth=True,
            )
        with pytest.raises(tweepy.Forbidden, match="duplicate content"):
            await client.create_tweet(text="hello from AsyncClient")
        with pytest.raises(tweepy.NotFound):
            await client.request("GET", "/2/no/such/route", params={})  # JSON, so no ContentTypeError
        client.bearer_token = "not-a-token"
        with pytest.raises(tweepy.Unauthorized):
            await client.get_me(user_auth=False)
        fake.limits["create_tweet"] = RateLimit(3, 900.0)  # three posts made: the window is full
        with pytest.raises(tweepy.TooManyRequests) as limited:
            await client.create_tweet(text="limited", user_auth=True)
        assert limited.value.reset_time == int(limited.value.response.headers["x-rate-limit-reset"])
    assert len(fake.posts_by(alice)) == 3


def _node_ready() -> str | None:
    """Why the Node test cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "twitter-api-v2").is_dir():
        return "twitter-api-v2 is not installed (npm ci --prefix tests/node; .ci/run does it)"
    return None


async def test_twitter_api_v2_from_node_sees_xs_behaviour(fake: FakeX, tmp_path: Path) -> None:
    why = _node_ready()
    if why is not None:
        pytest.skip(why)
    alice = fake.users.create("alice")
    fake.limits["verify_credentials"] = RateLimit(1, 900.0)
    config = {
        "port": _port(fake),
        "ca": str(tmp_path / "ca.pem"),
        "appKey": fake.consumer_key,
        "appSecret": fake.consumer_secret,
        "accessToken": alice.oauth1.access_token,
        "accessSecret": alice.oauth1.access_token_secret,
        "bearer": alice.bearer.access_token,
        "userId": alice.user_id,
    }
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(NODE_DIR / "drive_fakex.mjs"),
        json.dumps(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 25)
    assert proc.returncode == 0, err.decode()
    seen = json.loads(out)
    assert seen["me"] == {"id": alice.user_id, "name": "Alice", "username": "alice"}
    assert seen["verify"] == "alice"
    assert fake.posts[seen["reply"]].in_reply_to_tweet_id == seen["post"]
    assert fake.posts[seen["poll"]].poll_options == ("red", "blue")
    assert seen["bookmark"] == {"bookmarked": True}
    assert seen["oauth1Bookmark"] == [403, "Unsupported Authentication"]
    assert seen["duplicate"][0] == 403 and "duplicate content" in seen["duplicate"][1]
    assert seen["notFound"] == [404, 34]
    assert seen["unauthorized"] == [401, "Unauthorized"]
    assert seen["limited"][0] == 429 and seen["limited"][1] == int(seen["limited"][2])
