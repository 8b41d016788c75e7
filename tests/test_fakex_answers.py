"""Every X answer FakeX mirrors, pinned: status, body and the headers clients read.

Requests go out raw (aiohttp, with a signer only where OAuth 1.0a needs one), so what is pinned is the
server's answer and nothing of asyncx's client.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from asyncx._auth import OAuth1Signer
from asyncx.testing import FakeUser, FakeX
from asyncx.testing._server import NOT_FOUND_BODY

PROBLEMS = "https://api.twitter.com/2/problems/"
INVALID = "One or more parameters to your request was invalid."


class Answer:
    def __init__(self, status: int, body: Any, headers: Any) -> None:
        self.status, self.body, self.headers = status, body, headers


async def call(
    fake: FakeX,
    method: str,
    path: str,
    user: FakeUser | None = None,
    *,
    oauth1: bool = False,
    body: Any = None,
    form: Iterable[tuple[str, str]] = (),
    query: Iterable[tuple[str, str]] = (),
    authorization: str | None = None,
) -> Answer:
    """One raw request: JSON ``body`` or a ``form``, signed for ``user`` (bearer unless ``oauth1``)."""
    query, form = list(query), list(form)
    url = fake.base_url + path + ("?" + urlencode(query) if query else "")
    headers: dict[str, str] = {}
    data: bytes | None = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    elif form:
        data, headers["Content-Type"] = urlencode(form).encode(), "application/x-www-form-urlencoded"
    if authorization is not None:
        headers["Authorization"] = authorization
    elif user is not None and oauth1:
        signer = OAuth1Signer(fake.consumer_key, fake.consumer_secret)
        headers["Authorization"] = signer.authorization(
            method, fake.base_url + path, query + form, user.oauth1
        )
    elif user is not None:
        headers["Authorization"] = user.bearer.authorization
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, data=data) as resp,
    ):
        assert resp.content_type == "application/json", await resp.text()
        assert "Date" in resp.headers
        return Answer(resp.status, await resp.json(), resp.headers)


def rate_headers(answer: Answer, limit: int, remaining: int) -> None:
    assert answer.headers["x-rate-limit-limit"] == str(limit)
    assert answer.headers["x-rate-limit-remaining"] == str(remaining)
    assert answer.headers["x-rate-limit-reset"].isdigit()


# -- paths and methods ----------------------------------------------------------------------------------


async def test_a_path_x_does_not_serve_is_a_json_404_with_code_34() -> None:
    async with FakeX() as fake:
        for path in ("/2/nothing", "/1.1/statuses/update.json", "/"):
            answer = await call(fake, "GET", path)
            assert (answer.status, answer.body) == (404, NOT_FOUND_BODY)
        assert NOT_FOUND_BODY == {"errors": [{"message": "Sorry, that page does not exist", "code": 34}]}


async def test_a_wrong_method_is_a_json_405_naming_the_allowed_ones() -> None:
    async with FakeX() as fake:
        answer = await call(fake, "PUT", "/2/tweets")
        assert answer.status == 405
        assert answer.body == {
            "title": "Method Not Allowed",
            "detail": "Method Not Allowed",
            "type": "about:blank",
            "status": 405,
        }
        assert "POST" in answer.headers["Allow"]


# -- authentication -------------------------------------------------------------------------------------


async def test_an_unknown_bearer_token_is_xs_bare_401_on_v2_and_code_89_on_v1() -> None:
    async with FakeX() as fake:
        answer = await call(fake, "POST", "/2/tweets", authorization="Bearer nope", body={"text": "x"})
        assert answer.status == 401
        assert answer.body == {
            "title": "Unauthorized",
            "detail": "Unauthorized",
            "type": "about:blank",
            "status": 401,
        }
        v1 = await call(fake, "GET", "/1.1/account/verify_credentials.json", authorization="Bearer nope")
        assert (v1.status, v1.body) == (
            401,
            {"errors": [{"message": "Invalid or expired token.", "code": 89}]},
        )


async def test_a_bad_signature_is_code_32_and_an_unknown_token_code_89() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        good = OAuth1Signer(fake.consumer_key, fake.consumer_secret)
        url = fake.base_url + "/1.1/account/verify_credentials.json"
        forged = good.authorization("GET", url + "x", [], alice.oauth1)  # signed for another URL
        answer = await call(fake, "GET", "/1.1/account/verify_credentials.json", authorization=forged)
        assert (answer.status, answer.body) == (
            401,
            {"errors": [{"message": "Could not authenticate you.", "code": 32}]},
        )
        unknown = forged.replace(alice.oauth1.access_token, "1-unknown")
        answer = await call(fake, "GET", "/1.1/account/verify_credentials.json", authorization=unknown)
        assert (answer.status, answer.body) == (
            401,
            {"errors": [{"message": "Invalid or expired token.", "code": 89}]},
        )


async def test_a_bookmark_as_an_oauth1_user_is_unsupported_authentication_after_the_signature_check() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        post = fake.add_post("p", alice)
        path = f"/2/users/{alice.user_id}/bookmarks"
        answer = await call(fake, "POST", path, alice, oauth1=True, body={"tweet_id": post.id})
        assert answer.status == 403
        assert answer.body == {
            "title": "Unsupported Authentication",
            "detail": "Authenticating with OAuth 1.0a User Context is forbidden for this endpoint.  "
            "Supported authentication types are [OAuth 2.0 User Context].",
            "type": f"{PROBLEMS}unsupported-authentication",
            "status": 403,
        }
        forged = OAuth1Signer(fake.consumer_key, "wrong").authorization(
            "POST", fake.base_url + path, [], alice.oauth1
        )
        answer = await call(fake, "POST", path, authorization=forged, body={"tweet_id": post.id})
        assert answer.status == 401  # who it is comes first
        assert fake.bookmarks[alice.user_id] == set()


async def test_the_oauth_scheme_is_case_insensitive_and_realm_is_not_signed() -> None:
    async with FakeX() as fake:
        alice = fake.users.create("alice")
        signer = OAuth1Signer(fake.consumer_key, fake.consumer_secret)
        url = fake.base_url + "/1.1/account/verify_credentials.json"
        header = signer.authorization("GET", url, [], alice.oauth1)
        lower = "oauth " + header.split(" ", 1)[1]
        answer = await call(fake, "GET", "/1.1/account/verify_credentials.json", authorization=lower)
        assert answer.status == 200 and answer.body["screen_name"] == "alice"
        header = signer.authorization("GET", url, [], alice.oauth1)
        with_realm = 'OAuth realm="https://api.x.com/", ' + header.split(" ", 1)[1]
        answer = await call(fake, "GET", "/1.1/account/verify_credentials.json", authorization=with_realm)
        assert answer.status == 200


# -- rate limits ----------------------------------------------------------------------------------------


async def test_429_bodies_are_xs_on_v2_and_v1() -> None:
    from asyncx import RateLimit

    async with FakeX(
        limits={"create_tweet": RateLimit(1, 900.0), "verify_credentials": RateLimit(1, 900.0)}
    ) as fake:
        alice = fake.users.create()
        assert (await call(fake, "POST", "/2/tweets", alice, body={"text": "one"})).status == 201
        answer = await call(fake, "POST", "/2/tweets", alice, body={"text": "two"})
        assert answer.status == 429
        assert answer.body == {
            "title": "Too Many Requests",
            "detail": "Too Many Requests",
            "type": "about:blank",
            "status": 429,
        }
        rate_headers(answer, 1, 0)
        await call(fake, "GET", "/1.1/account/verify_credentials.json", alice, oauth1=True)
        v1 = await call(fake, "GET", "/1.1/account/verify_credentials.json", alice, oauth1=True)
        assert (v1.status, v1.body) == (429, {"errors": [{"message": "Rate limit exceeded", "code": 88}]})
        rate_headers(v1, 1, 0)


# -- posts ----------------------------------------------------------------------------------------------


async def test_a_duplicate_post_and_a_reply_to_a_missing_post_are_xs_403s() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        assert (await call(fake, "POST", "/2/tweets", alice, body={"text": "same"})).status == 201
        answer = await call(fake, "POST", "/2/tweets", alice, body={"text": "same"})
        assert (answer.status, answer.body) == (
            403,
            {
                "detail": "You are not allowed to create a Tweet with duplicate content.",
                "type": "about:blank",
                "title": "Forbidden",
                "status": 403,
            },
        )
        reply = {"text": "hi", "reply": {"in_reply_to_tweet_id": "123"}}
        answer = await call(fake, "POST", "/2/tweets", alice, body=reply)
        assert (answer.status, answer.body) == (
            403,
            {
                "detail": "You attempted to reply to a Tweet that is deleted or not visible to you.",
                "type": "about:blank",
                "title": "Forbidden",
                "status": 403,
            },
        )
        rate_headers(answer, 100, 97)


async def test_media_ids_the_user_has_not_uploaded_are_refused() -> None:
    async with FakeX() as fake:
        alice, bob = fake.users.create(), fake.users.create()
        mine, bobs = fake.add_media(alice), fake.add_media(bob)
        expired = fake.add_media(alice, expires_in=-1.0)
        for ids in (["123"], [bobs], [mine, expired]):
            answer = await call(fake, "POST", "/2/tweets", alice, body={"media": {"media_ids": ids}})
            assert (answer.status, answer.body) == (
                400,
                {
                    "errors": [
                        {
                            "parameters": {"media.media_ids": [i for i in ids if i != mine]},
                            "message": "Your media IDs are invalid.",
                        }
                    ],
                    "title": "Invalid Request",
                    "detail": INVALID,
                    "type": f"{PROBLEMS}invalid-request",
                },
            )
        answer = await call(fake, "POST", "/2/tweets", alice, body={"media": {"media_ids": [mine]}})
        assert answer.status == 201 and fake.posts[answer.body["data"]["id"]].media_ids == (mine,)


@pytest.mark.parametrize(
    ("body", "parameter", "message"),
    [
        ({"text": "x", "colour": "red"}, "colour", "$.colour: is not defined in the schema"),
        ({"text": 5}, "text", "$.text: integer found, string expected"),
        ({"poll": {"options": ["a"], "duration_minutes": 5}}, "poll.options", "must hold 2 to 4 items"),
        (
            {"text": "x", "reply_settings": "everyone"},
            "reply_settings",
            "does not have a value in the enumeration",
        ),
        (
            {"quote_tweet_id": "1", "poll": {"options": ["a", "b"], "duration_minutes": 5}},
            "quote_tweet_id",
            "mutually exclusive",
        ),
        ({}, "text", "a post needs text, media, a poll, a card or a quote"),
        ({"text": "é" * 281}, "text", "Your Tweet text is too long."),
        (
            {"text": "x", "reply": {"in_reply_to_tweet_id": "abc"}},
            "reply.in_reply_to_tweet_id",
            "^[0-9]{1,19}$",
        ),
    ],
)
async def test_fakes_own_checks_refuse_what_x_refuses(
    body: dict[str, Any], parameter: str, message: str
) -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        answer = await call(fake, "POST", "/2/tweets", alice, body=body)
        assert answer.status == 400
        assert (
            answer.body["title"] == "Invalid Request" and answer.body["type"] == f"{PROBLEMS}invalid-request"
        )
        [error] = answer.body["errors"]
        assert list(error["parameters"]) == [parameter] and message in error["message"]
        assert fake.posts == {}


async def test_get_and_delete_a_post() -> None:
    async with FakeX() as fake:
        alice, bob = fake.users.create(), fake.users.create()
        post = fake.add_post("hello", alice)
        answer = await call(fake, "GET", f"/2/tweets/{post.id}", bob)
        assert answer.status == 200
        assert answer.body["data"]["id"] == post.id and answer.body["data"]["text"] == "hello"
        rate_headers(answer, 900, 899)
        missing = await call(fake, "GET", "/2/tweets/42", bob)
        assert (missing.status, missing.body) == (
            200,
            {
                "errors": [
                    {
                        "value": "42",
                        "detail": "Could not find tweet with id: [42].",
                        "title": "Not Found Error",
                        "resource_type": "tweet",
                        "parameter": "id",
                        "resource_id": "42",
                        "type": f"{PROBLEMS}resource-not-found",
                    }
                ]
            },
        )
        assert (await call(fake, "DELETE", f"/2/tweets/{post.id}", bob)).status == 403
        answer = await call(fake, "DELETE", f"/2/tweets/{post.id}", alice, oauth1=True)
        assert (answer.status, answer.body) == (200, {"data": {"deleted": True}})
        rate_headers(answer, 50, 49)
        assert fake.posts == {}


# -- users ----------------------------------------------------------------------------------------------


async def test_users_me_by_id_by_username_and_verify_credentials() -> None:
    async with FakeX() as fake:
        alice = fake.users.create("alice")
        me = await call(fake, "GET", "/2/users/me", alice)
        assert (me.status, me.body) == (
            200,
            {"data": {"id": alice.user_id, "name": "Alice", "username": "alice"}},
        )
        rate_headers(me, 75, 74)
        assert (await call(fake, "GET", "/2/users/me", alice, oauth1=True)).body == me.body
        by_id = await call(fake, "GET", f"/2/users/{alice.user_id}", alice)
        by_name = await call(fake, "GET", "/2/users/by/username/ALICE", alice)
        assert by_id.body == by_name.body == me.body
        nobody = await call(fake, "GET", "/2/users/by/username/nobody", alice)
        assert (
            nobody.status == 200
            and nobody.body["errors"][0]["detail"] == "Could not find user with username: [nobody]."
        )
        v1 = await call(fake, "GET", "/1.1/account/verify_credentials.json", alice, oauth1=True)
        assert (v1.status, v1.body) == (
            200,
            {"id": int(alice.user_id), "id_str": alice.user_id, "name": "Alice", "screen_name": "alice"},
        )
        rate_headers(v1, 75, 74)
        as_bearer = await call(fake, "GET", "/1.1/account/verify_credentials.json", alice)
        assert as_bearer.status == 403
        assert as_bearer.body == {
            "errors": [{"message": "Your credentials do not allow access to this resource.", "code": 220}]
        }


# -- bookmarks ------------------------------------------------------------------------------------------


async def test_bookmark_list_and_remove() -> None:
    async with FakeX() as fake:
        alice, bob = fake.users.create(), fake.users.create()
        post = fake.add_post("p", bob)
        path = f"/2/users/{alice.user_id}/bookmarks"
        added = await call(fake, "POST", path, alice, body={"tweet_id": post.id})
        assert (added.status, added.body) == (200, {"data": {"bookmarked": True}})
        rate_headers(added, 50, 49)
        listed = await call(fake, "GET", path, alice)
        assert [t["id"] for t in listed.body["data"]] == [post.id] and listed.body["meta"][
            "result_count"
        ] == 1
        rate_headers(listed, 180, 179)
        other = await call(fake, "GET", f"/2/users/{bob.user_id}/bookmarks", alice)
        assert other.status == 403 and other.body["type"] == f"{PROBLEMS}client-forbidden"
        gone = await call(fake, "DELETE", f"{path}/{post.id}", alice)
        assert (gone.status, gone.body) == (200, {"data": {"bookmarked": False}})
        assert fake.bookmarks[alice.user_id] == set()
        missing = await call(fake, "POST", path, alice, body={"tweet_id": "7"})
        assert (missing.status, missing.body) == (
            404,
            {
                "title": "Not Found Error",
                "type": f"{PROBLEMS}resource-not-found",
                "status": 404,
                "detail": "Could not find tweet with tweet_id: [7].",
            },
        )


# -- collections (v1.1) ---------------------------------------------------------------------------------


async def test_collections_add_reads_the_query_string_as_x_does() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        post = fake.add_post("p", alice)
        path = "/1.1/collections/entries/add.json"
        query = [("id", "custom-9"), ("tweet_id", post.id)]
        answer = await call(fake, "POST", path, alice, oauth1=True, query=query)
        assert (answer.status, answer.body) == (200, {"objects": {}, "response": {"errors": []}})
        assert fake.collections["custom-9"] == [post.id]
        again = await call(fake, "POST", path, alice, oauth1=True, form=query)
        assert again.body["response"]["errors"] == [
            {"change": {"op": "add", "tweet_id": post.id}, "reason": "duplicate"}
        ]
        bad = await call(fake, "POST", path, alice, oauth1=True, form=[("id", "nope"), ("tweet_id", post.id)])
        assert (bad.status, bad.body) == (
            400,
            {"errors": [{"code": 44, "message": "id parameter is invalid."}]},
        )
