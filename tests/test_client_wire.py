"""Wire formats, checked on a real loopback server: exact JSON and form bodies, headers and paths."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from aiohttp import web
from multidict import CIMultiDict

import asyncx

ALICE = asyncx.OAuth1User(access_token="111-alicetoken", access_token_secret="alicesecret")
BOB = asyncx.BearerUser(access_token="bobtoken", user_id="2244994945")


@attrs.frozen
class Seen:
    """One request as the server received it."""

    headers: CIMultiDict[str]
    body: bytes


class Wire:
    """A loopback server that answers each (method, path) as told and records every request it receives."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: defaultdict[tuple[str, str], list[Seen]] = defaultdict(list)
        self._answers: dict[tuple[str, str], tuple[int, object, dict[str, str]]] = {}

    def post(self, path: str, *, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        """Answer every POST to ``path`` with ``status`` and the JSON ``payload``."""
        self._answers["POST", path] = (status, payload, headers or {})

    async def handle(self, request: web.Request) -> web.Response:
        key = (request.method, request.path)
        self.requests[key].append(Seen(CIMultiDict(request.headers), await request.read()))
        if key not in self._answers:
            return web.json_response({"title": "Not Found"}, status=404)
        status, payload, headers = self._answers[key]
        return web.json_response(payload, status=status, headers=headers)


def _sent(wire: Wire, method: str, path: str) -> Seen:
    calls = wire.requests[method, path]
    assert len(calls) == 1
    return calls[0]


@pytest.fixture
async def mocked() -> AsyncIterator[Wire]:
    wire = Wire()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", wire.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    wire.url = f"http://127.0.0.1:{port}"
    yield wire
    await runner.cleanup()


def wired(wire: Wire, **kw: Any) -> asyncx.Client:
    """A client whose API is the loopback server (credentials may go over http:// to loopback)."""
    return asyncx.Client(base_url=wire.url, **kw)


async def test_create_tweet_exact_json_body_bearer(mocked: Wire) -> None:
    mocked.post("/2/tweets", status=201, payload={"data": {"id": "1", "text": "hi"}})
    async with wired(mocked) as client:
        post = await client.create_tweet(
            text="hi",
            user=BOB,
            reply={"in_reply_to_tweet_id": "9"},
            reply_settings="following",
            geo=asyncx.Geo("p1"),
        )
    assert post == asyncx.Tweet(id="1", text="hi")
    sent = _sent(mocked, "POST", "/2/tweets")
    assert json.loads(sent.body) == {
        "text": "hi",
        "reply": {"in_reply_to_tweet_id": "9"},
        "reply_settings": "following",
        "geo": {"place_id": "p1"},
    }
    assert sent.headers["Authorization"] == "Bearer bobtoken"
    assert sent.headers["Content-Type"] == "application/json"


async def test_every_create_tweet_field_on_the_wire(mocked: Wire) -> None:
    mocked.post("/2/tweets", status=201, payload={"data": {"id": "2", "text": "t"}})
    async with wired(mocked) as client:
        await client.create_tweet(
            text="t",
            for_super_followers_only=True,
            reply={"in_reply_to_tweet_id": "9", "exclude_reply_user_ids": [7]},
            media={"media_ids": ["5", "6"], "tagged_user_ids": ["8"]},
            reply_settings="mentionedUsers",
            geo={"place_id": "p"},
            direct_message_deep_link="https://twitter.com/messages/compose?recipient_id=1",
            user=BOB,
        )
    assert json.loads(_sent(mocked, "POST", "/2/tweets").body) == {
        "text": "t",
        "for_super_followers_only": True,
        "reply": {"in_reply_to_tweet_id": "9", "exclude_reply_user_ids": ["7"]},
        "media": {"media_ids": ["5", "6"], "tagged_user_ids": ["8"]},
        "reply_settings": "mentionedUsers",
        "geo": {"place_id": "p"},
        "direct_message_deep_link": "https://twitter.com/messages/compose?recipient_id=1",
    }


async def test_poll_and_quote_bodies(mocked: Wire) -> None:
    mocked.post("/2/tweets", status=201, payload={"data": {"id": "3", "text": "q"}})
    async with wired(mocked) as client:
        await client.create_tweet(text="q", poll={"options": ["a", "b"], "duration_minutes": 60}, user=BOB)
        await client.create_tweet(quote_tweet_id=4, user=BOB)
    bodies = [json.loads(c.body) for c in mocked.requests["POST", "/2/tweets"]]
    assert bodies == [
        {"text": "q", "poll": {"options": ["a", "b"], "duration_minutes": 60}},
        {"quote_tweet_id": "4"},
    ]


async def test_oauth1_post_is_signed_without_the_json_body(mocked: Wire) -> None:
    mocked.post("/2/tweets", status=201, payload={"data": {"id": "1", "text": "hello"}})
    async with wired(mocked, consumer_key="ck", consumer_secret="cs") as client:
        await client.create_tweet(text="hello", user=ALICE)
    headers = _sent(mocked, "POST", "/2/tweets").headers
    auth = headers["Authorization"]
    assert auth.startswith('OAuth oauth_consumer_key="ck"')
    assert 'oauth_token="111-alicetoken"' in auth and "oauth_signature=" in auth
    assert "text" not in auth and "cs" not in auth.split("oauth_signature=")[0].replace("ck", "")


async def test_bookmark_path_uses_the_token_user(mocked: Wire) -> None:
    url = "/2/users/2244994945/bookmarks"
    mocked.post(url, status=200, payload={"data": {"bookmarked": True}})
    async with wired(mocked) as client:
        assert await client.bookmark("1460323737035677698", user=BOB) is True
    assert json.loads(_sent(mocked, "POST", url).body) == {"tweet_id": "1460323737035677698"}


async def test_collection_add_is_a_signed_form(mocked: Wire) -> None:
    url = "/1.1/collections/entries/add.json"
    mocked.post(url, status=200, payload={"objects": {}, "response": {"errors": []}})
    async with wired(mocked, consumer_key="ck", consumer_secret="cs") as client:
        res = await client.add_collection_entry("custom-123", "42", user=ALICE, relative_to="41", above=False)
    assert res == asyncx.CollectionResult() and res.ok
    sent = _sent(mocked, "POST", url)
    assert sent.body == b"id=custom-123&tweet_id=42&relative_to=41&above=false"
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent.headers["Authorization"].startswith("OAuth ")


async def test_collection_add_without_relative_to_sends_only_ids(mocked: Wire) -> None:
    url = "/1.1/collections/entries/add.json"
    mocked.post(url, status=200, payload={"objects": {}, "response": {}})
    async with wired(mocked, consumer_key="ck", consumer_secret="cs") as client:
        await client.add_collection_entry("custom-123", "42", user=ALICE)
    assert _sent(mocked, "POST", url).body == b"id=custom-123&tweet_id=42"


async def test_curate_json_body_and_per_change_errors(mocked: Wire) -> None:
    url = "/1.1/collections/entries/curate.json"
    body = {
        "objects": {},
        "response": {"errors": [{"change": {"op": "add", "tweet_id": "7"}, "reason": "duplicate"}]},
    }
    mocked.post(url, status=200, payload=body)
    async with wired(mocked, consumer_key="ck", consumer_secret="cs") as client:
        res = await client.curate_collection(
            "custom-1", [{"op": "add", "tweet_id": "7"}, asyncx.CollectionChange("remove", "8")], user=ALICE
        )
    assert res.errors == (asyncx.CollectionError("add", "7", "duplicate"),)
    assert not res.ok
    assert json.loads(_sent(mocked, "POST", url).body) == {
        "id": "custom-1",
        "changes": [{"op": "add", "tweet_id": "7"}, {"op": "remove", "tweet_id": "8"}],
    }


async def test_a_base_url_with_a_trailing_slash_works(mocked: Wire) -> None:
    mocked.post("/2/tweets", status=201, payload={"data": {"id": "1", "text": "x"}})
    async with asyncx.Client(base_url=mocked.url + "/") as client:
        assert (await client.create_tweet(text="x", user=BOB)).id == "1"
    assert len(mocked.requests["POST", "/2/tweets"]) == 1


async def test_partial_errors_kept_on_201(mocked: Wire) -> None:
    partial = [{"title": "Not Found Error", "detail": "Could not find place", "type": "x"}]
    mocked.post("/2/tweets", status=201, payload={"data": {"id": "1", "text": "x"}, "errors": partial})
    async with wired(mocked) as client:
        post = await client.create_tweet(text="x", user=BOB)
    assert post.errors == tuple(partial)


async def test_error_response_raises_typed_error_with_headers(mocked: Wire) -> None:
    problem = {
        "title": "Forbidden",
        "type": "about:blank",
        "status": 403,
        "detail": "You are not allowed to create a Tweet with duplicate content.",
    }
    mocked.post("/2/tweets", status=403, payload=problem, headers={"x-rate-limit-remaining": "9"})
    async with wired(mocked) as client:
        with pytest.raises(asyncx.DuplicateContent) as info:
            await client.create_tweet(text="x", user=BOB)
    assert info.value.status == 403
    assert info.value.headers["x-rate-limit-remaining"] == "9"
    assert info.value.problem is not None and info.value.problem.title == "Forbidden"


async def test_client_default_user_and_send_with_request_object(mocked: Wire) -> None:
    mocked.post("/2/tweets", status=201, payload={"data": {"id": "5", "text": "r"}})
    async with wired(mocked, user=BOB) as client:
        post = await client.send(asyncx.CreateTweet(text="r"))
    assert post.id == "5"


async def test_given_session_is_not_closed(mocked: Wire) -> None:
    import aiohttp

    mocked.post("/2/tweets", status=201, payload={"data": {"id": "5", "text": "r"}})
    async with aiohttp.ClientSession() as session:
        async with wired(mocked, session=session) as client:
            await client.create_tweet(text="r", user=BOB)
        assert not session.closed


@pytest.mark.parametrize(
    "payload",
    [
        {"unexpected": True},
        {"data": {"text": "x"}},  # no id
        {"data": {"id": {"$oid": "1"}, "text": "x"}},  # an object where the id goes
        {"data": {"id": "12ab", "text": "x"}},
        {"data": {"id": "1", "text": ["x"]}},
    ],
)
async def test_a_success_body_x_does_not_document_is_malformed_and_delivered(
    mocked: Wire, payload: object
) -> None:
    """A 2xx without a usable id: the post exists, its id unknown; never a cattrs error or a bogus id."""
    mocked.post("/2/tweets", status=201, payload=payload)
    async with wired(mocked) as client:
        with pytest.raises(asyncx.MalformedResponse) as info:
            await client.create_tweet(text="x", user=BOB)
        assert client.rate_stats(BOB).sent == 1  # not retried: the post was made
    assert info.value.status == 201 and info.value.maybe_delivered is True
    assert "does not send" in str(info.value)


#: A value other than the default for every field of a post but its text.
_SET = {
    "quote_tweet_id": "5",
    "for_super_followers_only": True,
    "reply": asyncx.Reply("9"),
    "media": asyncx.Media(("1",)),
    "poll": asyncx.Poll(("yes", "no"), 60),
    "reply_settings": "following",
    "geo": asyncx.Geo("p1"),
    "direct_message_deep_link": "https://twitter.com/messages/compose?recipient_id=2244994945",
    "card_uri": "card://1",
    "community_id": "7",
    "edit_options": asyncx.EditOptions("3"),
    "made_with_ai": True,
    "nullcast": True,
    "paid_partnership": True,
    "share_with_followers": True,
}


def test_every_post_field_leaves_the_text_only_shortcut() -> None:
    """Text-only posts skip the converter; a post that sets any other field must not lose it."""
    import attrs

    from asyncx._endpoints import _json_body, _post_body

    assert set(_SET) == {f.name for f in attrs.fields(asyncx.CreateTweet)} - {"text"}
    plain = asyncx.CreateTweet(text="hi")
    assert _post_body(plain) == _json_body(plain)
    for name, value in _SET.items():
        request = asyncx.CreateTweet(text="hi", **{name: value})  # type: ignore[arg-type]
        body = json.loads(_post_body(request)[1])
        assert name in body, name
        assert _post_body(request) == _json_body(request)
