"""asyncx.testing.FakeX behaves like X: windows, headers, OAuth checks, duplicates, collections, faults."""

import asyncio
import contextlib
import json
import shlex
import ssl
import sys
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

import asyncx
from asyncx._auth import OAuth1Signer
from asyncx.testing import FakeUser, FakeX, Faults, ManualClock


async def _raw_post(
    fake: FakeX, path: str, *, headers: dict[str, str], data: bytes
) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session:
        resp = await session.post(fake.base_url + path, headers=headers, data=data)
        await resp.read()
        return resp


async def _post(fake: FakeX, user: FakeUser, text: str) -> tuple[int, CIMultiDictProxy[str]]:
    """Post straight to the server, past the client's scheduler, to see the server's own limits."""
    headers = {"Authorization": user.bearer.authorization, "Content-Type": "application/json"}
    resp = await _raw_post(fake, "/2/tweets", headers=headers, data=json.dumps({"text": text}).encode())
    return resp.status, resp.headers


async def test_post_duplicate_and_inspection() -> None:
    async with FakeX() as fake:
        alice = fake.users.create("alice")
        async with fake.client() as client:
            post = await client.create_tweet(text="hello", user=alice.oauth1)
            with pytest.raises(asyncx.DuplicateContent) as info:
                await client.create_tweet(text="hello", user=alice.bearer)
        assert info.value.problem is not None and "duplicate content" in info.value.problem.detail
        assert [(p.id, p.text) for p in fake.posts_by(alice)] == [(post.id, "hello")]
        assert [(e.endpoint, e.status, e.duplicate) for e in fake.log] == [
            ("create_tweet", 201, False),
            ("create_tweet", 403, True),
        ]
        assert fake.users["alice"] is alice


async def test_access_tokens_live_token_lifetime_and_a_spent_refresh_token_is_counted() -> None:
    clock = ManualClock()
    async with FakeX(clock=clock, token_lifetime=3.0) as fake:
        alice = fake.users.create()
        user = asyncx.BearerUser(
            alice.bearer.access_token,
            alice.user_id,
            refresh_token=alice.bearer.refresh_token,
            client_id=fake.client_id,
        )
        first_refresh = user.refresh_token
        async with fake.client(clock=clock.time, sleep=clock.sleep) as client:
            await client.create_tweet(text="fresh", user=user)
            await clock.advance(3.0)  # the first token has lived its 3 s
            await client.create_tweet(text="refreshed", user=user)
            assert fake.refreshes == 1 and fake.count(401) == 1
            await clock.advance(2.9)  # the new one still lives
            await client.create_tweet(text="still", user=user)
            assert fake.refreshes == 1
        form = {"grant_type": "refresh_token", "refresh_token": first_refresh, "client_id": fake.client_id}
        async with aiohttp.ClientSession() as session:
            async with session.post(fake.base_url + "/2/oauth2/token", data=form) as resp:
                assert resp.status == 400  # single use
            form["refresh_token"] = user.refresh_token or ""
            async with session.post(fake.base_url + "/2/oauth2/token", data=form) as resp:
                assert (await resp.json())["expires_in"] == 3
        assert fake.refresh_reuses == 1 and len(fake.posts) == 3


async def test_fixed_window_anchored_on_first_request_with_headers() -> None:
    clock = ManualClock(1000.25)
    async with FakeX(clock=clock, limits={"create_tweet": asyncx.RateLimit(2, 10.0)}) as fake:
        alice = fake.users.create()
        assert (await _post(fake, alice, "1"))[0] == 201
        await clock.advance(5)
        status, headers = await _post(fake, alice, "2")
        assert status == 201 and headers["x-rate-limit-remaining"] == "0"
        status, headers = await _post(fake, alice, "3")
        assert status == 429
        assert headers["x-rate-limit-limit"] == "2"
        assert headers["x-rate-limit-remaining"] == "0"
        assert headers["x-rate-limit-reset"] == "1011"  # ceil(1000.25 + 10)
        await clock.advance(5.5)  # 1010.75: not yet
        assert (await _post(fake, alice, "3"))[0] == 429
        await clock.advance(0.25)  # 1011: the window resets on the whole second
        status, headers = await _post(fake, alice, "3")
        assert status == 201 and headers["x-rate-limit-reset"] == "1021"
        assert fake.count(429) == 2 and fake.count(201) == 3


async def test_windows_are_per_user_and_per_endpoint() -> None:
    clock = ManualClock()
    limits = {"create_tweet": asyncx.RateLimit(1, 10.0), "bookmark": asyncx.RateLimit(1, 10.0)}
    async with FakeX(clock=clock, limits=limits) as fake:
        a, b = fake.users.create(), fake.users.create()
        assert (await _post(fake, a, "x"))[0] == 201
        assert (await _post(fake, b, "x"))[0] == 201
        assert (await _post(fake, a, "y"))[0] == 429
        post = next(iter(fake.posts))
        bookmark = {"Authorization": a.bearer.authorization, "Content-Type": "application/json"}
        body = json.dumps({"tweet_id": post}).encode()
        path = f"/2/users/{a.user_id}/bookmarks"
        assert (await _raw_post(fake, path, headers=bookmark, data=body)).status == 200
        assert (await _raw_post(fake, path, headers=bookmark, data=body)).status == 429


async def test_daily_user_and_app_caps_report_their_headers() -> None:
    clock = ManualClock(5000.0)
    async with FakeX(clock=clock, user_daily_limit=1, app_daily_limit=2) as fake:
        a, b, c = (fake.users.create() for _ in range(3))
        assert (await _post(fake, a, "a"))[0] == 201
        status, headers = await _post(fake, a, "a2")
        assert status == 429
        assert headers["x-user-limit-24hour-remaining"] == "0"
        assert headers["x-user-limit-24hour-reset"] == str(5000 + 86400)
        assert (await _post(fake, b, "b"))[0] == 201
        status, headers = await _post(fake, c, "c")
        assert status == 429
        assert headers["x-app-limit-24hour-remaining"] == "0"
        assert headers["x-rate-limit-remaining"] != "0"


async def test_date_header_follows_skewed_server_clock() -> None:
    clock = ManualClock(1_700_000_000.0)
    async with FakeX(clock=clock, skew=-600.0) as fake:
        alice = fake.users.create()
        body = json.dumps({"text": "x"}).encode()
        headers = {"Authorization": alice.bearer.authorization, "Content-Type": "application/json"}
        resp = await _raw_post(fake, "/2/tweets", headers=headers, data=body)
        assert resp.status == 201
        assert parsedate_to_datetime(resp.headers["Date"]).timestamp() == 1_700_000_000.0 - 600


async def test_tampered_oauth1_request_is_rejected() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        fake.add_post("seed", alice)
        signer = OAuth1Signer(fake.consumer_key, fake.consumer_secret)
        url = fake.base_url + "/1.1/collections/entries/add.json"
        auth = signer.authorization("POST", url, [("id", "custom-1"), ("tweet_id", "1")], alice.oauth1)
        form = {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"}
        resp = await _raw_post(
            fake, "/1.1/collections/entries/add.json", headers=form, data=b"id=custom-1&tweet_id=2"
        )
        assert resp.status == 401
        assert fake.log[-1].status == 401
        assert fake.collections["custom-1"] == []


async def test_nonce_replay_is_rejected() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        signer = OAuth1Signer(fake.consumer_key, fake.consumer_secret)
        auth = signer.authorization("POST", fake.base_url + "/2/tweets", [], alice.oauth1)
        headers = {"Authorization": auth, "Content-Type": "application/json"}
        first = await _raw_post(fake, "/2/tweets", headers=headers, data=b'{"text": "one"}')
        again = await _raw_post(fake, "/2/tweets", headers=headers, data=b'{"text": "two"}')
        assert (first.status, again.status) == (201, 401)
        assert len(fake.posts) == 1


async def test_timestamp_out_of_bounds_is_code_135_on_v1_and_a_bare_401_on_v2() -> None:
    async with FakeX(skew=1000.0) as fake:
        alice = fake.users.create()
        signer = OAuth1Signer(fake.consumer_key, fake.consumer_secret)
        for path, v2 in (("/2/tweets", True), ("/1.1/collections/entries/add.json", False)):
            auth = signer.authorization("POST", fake.base_url + path, [], alice.oauth1)
            headers = {"Authorization": auth, "Content-Type": "application/json"}
            async with aiohttp.ClientSession() as session:
                resp = await session.post(fake.base_url + path, headers=headers, data=b'{"text": "x"}')
                body = await resp.json()
            assert resp.status == 401
            if v2:
                assert body == {
                    "title": "Unauthorized",
                    "detail": "Unauthorized",
                    "type": "about:blank",
                    "status": 401,
                }
            else:
                assert body == {"errors": [{"message": "Timestamp out of bounds.", "code": 135}]}


async def test_bearer_token_is_bound_to_its_user() -> None:
    async with FakeX() as fake:
        alice, bob = fake.users.create(), fake.users.create()
        post = fake.add_post("p", alice)
        body = json.dumps({"tweet_id": post.id}).encode()
        headers = {"Authorization": bob.bearer.authorization, "Content-Type": "application/json"}
        resp = await _raw_post(fake, f"/2/users/{alice.user_id}/bookmarks", headers=headers, data=body)
        assert resp.status == 403
        headers["Authorization"] = "Bearer not-a-token"
        resp = await _raw_post(fake, f"/2/users/{bob.user_id}/bookmarks", headers=headers, data=body)
        assert resp.status == 401
        assert fake.bookmarks[alice.user_id] == set()


async def test_server_validates_like_x_with_problem_bodies() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        headers = {"Authorization": alice.bearer.authorization, "Content-Type": "application/json"}
        for body in (b'{"text": "' + b"a" * 281 + b'"}', b"{not json", b'{"text": "x", "bogus": 1}', b"{}"):
            resp = await _raw_post(fake, "/2/tweets", headers=headers, data=body)
            assert resp.status == 400
        async with aiohttp.ClientSession() as session:
            resp = await session.post(fake.base_url + "/2/tweets", headers=headers, data=b"{}")
            problem = await resp.json()
        assert problem["type"].endswith("/invalid-request")
        assert fake.posts == {}


async def test_collections_capacity_duplicates_and_not_found() -> None:
    async with FakeX(collection_capacity=3) as fake:
        alice = fake.users.create()
        ids = [fake.add_post(str(i), alice).id for i in range(4)]
        async with fake.client() as client:
            for tweet_id in ids:
                assert (await client.add_collection_entry("custom-9", tweet_id, user=alice.oauth1)).ok
            assert fake.collections["custom-9"] == ids[:0:-1]  # newest first, the oldest dropped
            res = await client.curate_collection(
                "custom-9",
                [
                    {"op": "add", "tweet_id": ids[3]},
                    {"op": "add", "tweet_id": "123"},
                    {"op": "remove", "tweet_id": ids[2]},
                    {"op": "remove", "tweet_id": ids[0]},
                ],
                user=alice.oauth1,
            )
        assert res.errors == (
            asyncx.CollectionError("add", ids[3], "duplicate"),
            asyncx.CollectionError("add", "123", "not_found"),
            asyncx.CollectionError("remove", ids[0], "not_found"),
        )
        assert fake.collections["custom-9"] == [ids[3], ids[1]]


async def test_collection_insert_relative_to_an_entry() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        a, b, c = (fake.add_post(t, alice).id for t in "abc")
        async with fake.client() as client:
            await client.add_collection_entry("custom-1", a, user=alice.oauth1)
            await client.add_collection_entry("custom-1", b, user=alice.oauth1)
            await client.add_collection_entry("custom-1", c, user=alice.oauth1, relative_to=a, above=False)
        assert fake.collections["custom-1"] == [b, a, c]


async def test_error_fault_has_no_effect() -> None:
    async with FakeX(faults=Faults(error_rate=1.0)) as fake:
        alice = fake.users.create()
        async with fake.client(retry=None) as client:  # the server's faults, unretried
            with pytest.raises(asyncx.ServerError) as info:
                await client.create_tweet(text="x", user=alice.bearer)
        assert info.value.status == 503
        assert fake.posts == {}


async def test_dropped_connection_after_commit_keeps_the_post() -> None:
    async with FakeX(faults=Faults(drop_rate=1.0)) as fake:
        alice = fake.users.create()
        async with fake.client(retry=None) as client:  # the server's faults, unretried
            with pytest.raises(asyncx.TransportError) as info:
                await client.create_tweet(text="lost answer", user=alice.bearer)
        assert info.value.maybe_delivered is True
        assert [p.text for p in fake.posts_by(alice)] == ["lost answer"]
        assert fake.count(dropped=True) == 1


async def test_faults_are_seeded_and_repeatable() -> None:
    async def statuses(seed: int) -> list[int]:
        async with FakeX(faults=Faults(error_rate=0.5), seed=seed) as fake:
            alice = fake.users.create()
            async with fake.client(retry=None) as client:  # the server's faults, unretried
                for i in range(20):
                    with contextlib.suppress(asyncx.ServerError):
                        await client.create_tweet(text=str(i), user=alice.bearer)
            return [e.status for e in fake.log]

    first = await statuses(7)
    assert first == await statuses(7)
    assert {201, 503} <= set(first)


async def test_latency_delays_answers() -> None:
    async with FakeX(faults=Faults(latency=0.05, jitter=0.01)) as fake:
        alice = fake.users.create()
        async with fake.client() as client:
            loop = asyncio.get_running_loop()
            start = loop.time()
            await client.create_tweet(text="slow", user=alice.bearer)
            assert loop.time() - start >= 0.04


async def test_tls_with_generated_certificate_and_verification_on() -> None:
    async with FakeX(tls=True) as fake:
        alice = fake.users.create()
        assert fake.base_url.startswith("https://")
        async with fake.client() as client:
            assert (await client.create_tweet(text="secure", user=alice.bearer)).text == "secure"
        async with asyncx.Client(base_url=fake.base_url, retry=None) as untrusting:
            with pytest.raises(asyncx.TransportError) as info:
                await untrusting.create_tweet(text="x", user=alice.bearer)
        assert info.value.maybe_delivered is False
        assert len(fake.posts) == 1


@pytest.mark.fake_x(limits={"create_tweet": asyncx.RateLimit(1, 60.0)})
async def test_pytest_plugin_fixtures(fake_x: FakeX, x_client: asyncx.Client) -> None:
    """The documented example: the marker configures the server, x_client talks to it."""
    alice = fake_x.users.create("alice")
    await x_client.create_tweet(text="good morning", user=alice.oauth1)
    with pytest.raises(asyncx.RateLimited):
        await x_client.create_tweet(text="again", user=alice.oauth1, max_wait=5)
    assert [p.text for p in fake_x.posts_by(alice)] == ["good morning"]
    assert fake_x.count(status=429) == 0  # the client learned the limit and never sent the second


@contextlib.asynccontextmanager
async def _standalone(*args: str) -> AsyncIterator[tuple[dict[str, Any], str]]:
    """``python -m asyncx.testing`` in a child process: its JSON line, and its first stderr line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asyncx.testing", "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        lines = [
            (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            for _ in range(3 if "--http" not in args else 2)
        ]
        yield info, "".join(lines)
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_cli_serves_https_by_default_with_a_ca_bundle_and_refreshable_users() -> None:
    async with _standalone("--users", "1", "--tweet-limit", "1") as (info, said):
        assert info["base_url"].startswith("https://")
        context = ssl.create_default_context(cafile=info["ca_bundle"])
        user = info["users"][0]
        bearer = asyncx.BearerUser(
            access_token=user["bearer_token"],
            user_id=user["user_id"],
            refresh_token=user["refresh_token"],
            client_id=info["client_id"],
        )
        oauth1 = asyncx.OAuth1User(
            access_token=user["access_token"], access_token_secret=user["access_token_secret"]
        )
        async with asyncx.Client(
            info["consumer_key"], info["consumer_secret"], base_url=info["base_url"], ssl=context
        ) as client:
            assert (await client.create_tweet(text="from outside", user=oauth1)).text == "from outside"
            with pytest.raises(asyncx.RateLimited):
                await client.create_tweet(text="second", user=bearer, max_wait=0)
        form = {
            "grant_type": "refresh_token",
            "refresh_token": user["refresh_token"],
            "client_id": info["client_id"],
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(info["base_url"] + "/2/oauth2/token", data=form, ssl=context) as resp,
        ):
            assert resp.status == 200  # the printed refresh token and client id work
            assert (await resp.json())["token_type"] == "bearer"
        assert f"CA bundle: {info['ca_bundle']}" in said
        curl = said.split("try: ", 1)[1].strip()
        run = await asyncio.create_subprocess_exec(*shlex.split(curl), stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(run.communicate(), 30)
        assert json.loads(out)["data"]["id"] == user["user_id"]


async def test_cli_http_opt_out_and_state_kept_between_runs(tmp_path: Path) -> None:
    state = tmp_path / "fake.json"
    async with _standalone("--http", "--users", "1", "--state", str(state)) as (info, _):
        assert info["base_url"].startswith("http://") and "ca_bundle" not in info
        user = info["users"][0]
        bearer = asyncx.BearerUser(access_token=user["bearer_token"], user_id=user["user_id"])
        async with asyncx.Client(base_url=info["base_url"]) as client:
            post = await client.create_tweet(text="kept", user=bearer)
    async with _standalone("--users", "1", "--state", str(state)) as (again, _):
        assert again["users"] == info["users"] and again["consumer_key"] == info["consumer_key"]
        context = ssl.create_default_context(cafile=again["ca_bundle"])
        assert again["ca_bundle"] == str(state) + ".ca.pem"
        async with asyncx.Client(base_url=again["base_url"], ssl=context) as client:
            posts = await client.user_tweets(user["user_id"], user=bearer)
        assert [p.id for p in posts] == [post.id]
