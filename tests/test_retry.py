"""Retries and delivery safety: transient faults retried, duplicates of our own attempts told apart."""

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
import tenacity

import asyncx
from asyncx.testing import FakeUser, FakeX, Faults

BOB = asyncx.BearerUser(access_token="t", user_id="42")
CREATED = asyncx.Response(201, {}, b'{"data": {"id": "1", "text": "hi"}}')
DUPLICATE = asyncx.Response(
    403,
    {},
    json.dumps(
        {
            "title": "Forbidden",
            "type": "about:blank",
            "status": 403,
            "detail": "You are not allowed to create a Tweet with duplicate content.",
        }
    ).encode(),
)
FAST = asyncx.RetryPolicy(wait=tenacity.wait_random_exponential(multiplier=0.001, max=0.01))


def _script(*steps: asyncx.Response | Exception) -> tuple[asyncx.MockTransport, list[asyncx.WireRequest]]:
    """A transport answering each request with the next step (a response, or an exception raised)."""
    sent: list[asyncx.WireRequest] = []
    remaining = list(steps)

    async def handler(request: asyncx.WireRequest) -> asyncx.Response:
        if request.method == "HEAD":
            return asyncx.Response(200, {}, b"")
        sent.append(request)
        step = remaining.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    return asyncx.MockTransport(handler), sent


def _client(
    transport: asyncx.MockTransport, sleeps: list[float] | None = None, **kw: object
) -> asyncx.Client:
    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    kw.setdefault("retry", FAST)
    return asyncx.Client(transport=transport, sleep=sleep, **kw)  # type: ignore[arg-type]


def _status(status: int, headers: dict[str, str] | None = None) -> asyncx.Response:
    return asyncx.Response(status, headers or {}, b'{"title": "x", "type": "about:blank"}')


async def test_transient_5xx_retried_until_created() -> None:
    transport, sent = _script(_status(503), _status(500), CREATED)
    sleeps: list[float] = []
    async with _client(transport, sleeps) as client:
        post = await client.create_tweet(text="hi", user=BOB)
        assert client.rate_stats(BOB, "create_tweet").sent == 3  # every retry went through the scheduler
    assert post.id == "1" and len(sent) == 3 and len(sleeps) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_errors_retrying_cannot_fix_are_raised_at_once(status: int) -> None:
    transport, sent = _script(_status(status))
    async with _client(transport) as client:
        with pytest.raises(asyncx.APIError) as info:
            await client.create_tweet(text="hi", user=BOB)
    assert info.value.status == status and len(sent) == 1


async def test_retry_after_is_honoured() -> None:
    transport, _ = _script(_status(503, {"Retry-After": "7"}), CREATED)
    sleeps: list[float] = []
    async with _client(transport, sleeps) as client:
        await client.create_tweet(text="hi", user=BOB)
    assert sleeps == [7.0]


async def test_retry_after_as_an_http_date_is_honoured_against_the_answers_date() -> None:
    headers = {"Date": "Mon, 30 Nov 2026 04:00:00 GMT", "Retry-After": "Mon, 30 Nov 2026 04:00:07 GMT"}
    transport, _ = _script(_status(503, headers), CREATED)
    sleeps: list[float] = []
    async with _client(transport, sleeps) as client:
        await client.create_tweet(text="hi", user=BOB)
    assert sleeps == [7.0]


async def test_429_without_a_reset_is_retried_with_backoff() -> None:
    transport, sent = _script(_status(429), CREATED)
    async with _client(transport) as client:
        assert (await client.create_tweet(text="hi", user=BOB)).id == "1"
    assert len(sent) == 2


async def test_retry_can_be_turned_off() -> None:
    transport, sent = _script(_status(503), CREATED)
    async with _client(transport, retry=None) as client:
        with pytest.raises(asyncx.ServerError):
            await client.create_tweet(text="hi", user=BOB)
    assert len(sent) == 1


async def test_attempts_are_capped() -> None:
    transport, sent = _script(*[_status(502)] * 3)
    policy = asyncx.RetryPolicy(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none())
    async with _client(transport, retry=policy) as client:
        with pytest.raises(asyncx.ServerError):
            await client.create_tweet(text="hi", user=BOB)
    assert len(sent) == 3


async def test_deadline_stops_retries_on_the_clients_clock() -> None:
    now = [1000.0]
    transport, sent = _script(*[_status(503)] * 10)

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    policy = asyncx.RetryPolicy(
        stop=tenacity.stop_after_attempt(10), wait=tenacity.wait_fixed(4), deadline=10.0
    )
    async with asyncx.Client(transport=transport, retry=policy, clock=lambda: now[0], sleep=sleep) as client:
        with pytest.raises(asyncx.ServerError):
            await client.create_tweet(text="hi", user=BOB)
    assert len(sent) == 3  # at 1000, 1004, 1008; the next would start at 1012, past the deadline


async def test_duplicate_on_first_attempt_is_plain_duplicate_content() -> None:
    transport, _ = _script(DUPLICATE)
    async with _client(transport) as client:
        with pytest.raises(asyncx.DuplicateContent) as info:
            await client.create_tweet(text="hi", user=BOB)
    assert type(info.value) is asyncx.DuplicateContent


@pytest.mark.parametrize(
    "first",
    [
        asyncx.TransportError("connection reset", maybe_delivered=True),
        asyncx.TransportError("timed out", maybe_delivered=True),
        _status(500),
        _status(503),
    ],
)
async def test_duplicate_after_an_ambiguous_attempt_is_already_posted(first: object) -> None:
    transport, sent = _script(first, DUPLICATE)  # type: ignore[arg-type]
    async with _client(transport) as client:
        with pytest.raises(asyncx.AlreadyPosted) as info:
            await client.create_tweet(text="hello there", user=BOB)
    assert info.value.text == "hello there" and info.value.attempts == 2
    assert isinstance(info.value, asyncx.DuplicateContent) and len(sent) == 2


async def test_duplicate_after_a_refused_connection_is_not_ours() -> None:
    transport, _ = _script(asyncx.TransportError("refused", maybe_delivered=False), DUPLICATE)
    async with _client(transport) as client:
        with pytest.raises(asyncx.DuplicateContent) as info:
            await client.create_tweet(text="hi", user=BOB)
    assert type(info.value) is asyncx.DuplicateContent


def _outcome_counter() -> tuple[Callable[..., object], dict[str, int]]:
    counts = {"posted": 0, "already": 0}

    async def post(client: asyncx.Client, text: str, user: asyncx.BearerUser | asyncx.OAuth1User) -> None:
        try:
            await client.create_tweet(text=text, user=user)
            counts["posted"] += 1
        except asyncx.AlreadyPosted:
            counts["already"] += 1

    return post, counts


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_every_post_lands_exactly_once_through_faults(seed: int) -> None:
    faults = Faults(error_rate=0.15, drop_rate=0.05, latency=0.002, jitter=0.002)
    async with FakeX(faults=faults, seed=seed) as fake:
        users = [fake.users.create() for _ in range(8)]
        post, counts = _outcome_counter()
        async with fake.client(retry=FAST) as client:
            await asyncio.gather(
                *(
                    post(client, f"{u.name} {i}", u.bearer if i % 2 else u.oauth1)
                    for u in users
                    for i in range(15)
                )
            )
        assert counts["posted"] + counts["already"] == 120
        texts = [p.text for p in fake.posts.values()]
        assert len(texts) == 120 == len(set(texts))
        assert fake.count(503) > 0 and fake.count(dropped=True) > 0  # the faults did happen
        assert counts["already"] == sum(1 for e in fake.log if e.duplicate)


async def test_bookmark_and_collection_retried_after_a_dropped_answer() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        post = fake.add_post("p", alice)
        async with fake.client(retry=FAST) as client:
            fake.drop_next()
            assert await client.bookmark(post.id, user=alice.bearer) is True
            fake.drop_next()
            res = await client.add_collection_entry("custom-1", post.id, user=alice.oauth1)
            fake.fail_next(status=503)
            assert (await client.add_collection_entry("custom-2", post.id, user=alice.oauth1)).ok
        assert res.ok and res.delivered_earlier == (asyncx.CollectionError("add", post.id, "duplicate"),)
        assert fake.collections["custom-1"] == [post.id] and fake.bookmarks[alice.user_id] == {post.id}
        assert fake.count(dropped=True) == 2 and fake.count(503) == 1


@pytest.mark.parametrize("skew", [-900.0, 900.0])
async def test_oauth1_clock_skew_learned_after_one_401(skew: float) -> None:
    async with FakeX(skew=skew) as fake:
        users = [fake.users.create() for _ in range(3)]
        async with fake.client() as client:
            for round_ in range(3):
                await asyncio.gather(
                    *(client.create_tweet(text=f"{u.name} {round_}", user=u.oauth1) for u in users)
                )
        assert len(fake.posts) == 9
        assert fake.count(401) <= 3  # only the first concurrent round met the skew


async def test_expired_token_refreshed_once_for_concurrent_calls() -> None:
    stored: list[tuple[str, str | None]] = []

    async def on_refresh(user: asyncx.BearerUser) -> None:
        stored.append((user.access_token, user.refresh_token))

    async with FakeX() as fake:
        alice = fake.users.create()
        bearer = _refreshable(fake, alice, on_refresh)
        async with fake.client() as client:
            await client.create_tweet(text="before", user=bearer)
            old_refresh = bearer.refresh_token
            fake.expire_token(bearer)
            await asyncio.gather(*(client.create_tweet(text=f"after {i}", user=bearer) for i in range(10)))
            assert fake.refreshes == 1
            assert (
                stored == [(bearer.access_token, bearer.refresh_token)]
                and bearer.refresh_token != old_refresh
            )
            # The callback's new tokens are the ones used next, and the old refresh token is spent.
            await client.create_tweet(text="later", user=bearer)
            fake.expire_token(bearer)
            await client.create_tweet(text="again", user=bearer)
        assert fake.refreshes == 2 and len(fake.posts) == 13


def _refreshable(
    fake: FakeX,
    user: FakeUser,
    on_refresh: Callable[[asyncx.BearerUser], Awaitable[None]],
    access_token: str | None = None,
) -> asyncx.BearerUser:
    """A copy of a fake user's OAuth 2.0 credentials that refreshes through ``on_refresh``."""
    return asyncx.BearerUser(
        access_token=access_token or user.bearer.access_token,
        user_id=user.user_id,
        refresh_token=user.bearer.refresh_token,
        client_id=fake.client_id,
        on_refresh=on_refresh,
    )


async def test_a_token_that_expires_again_while_its_call_waits_for_budget_is_refreshed_again() -> None:
    """One post a second. The call's first token has expired; while it is refreshed, the user's budget is
    spent elsewhere and the new token expires too, so it expires while the call waits for the next
    window (as 3-second tokens do under a tight budget). That second 401 is not final."""
    one_a_second = {"create_tweet": asyncx.RateLimit(1, 1.0)}
    async with FakeX(limits=one_a_second) as fake:
        alice = fake.users.create()

        async with fake.client(rate_limits=one_a_second) as client:

            async def meanwhile(user: asyncx.BearerUser) -> None:
                if fake.refreshes == 1:
                    await client.create_tweet(text="elsewhere", user=alice.oauth1)  # the same budget
                    fake.expire_token(user)

            bearer = _refreshable(fake, alice, meanwhile)
            await client.create_tweet(text="first", user=bearer)
            fake.expire_token(bearer)
            await client.create_tweet(text="second", user=bearer)  # 401, refresh, wait, 401, refresh
        assert fake.refreshes == 2 and len(fake.posts) == 3
        assert fake.count(401) == 2


async def test_a_refreshed_token_refused_without_a_wait_is_final() -> None:
    """Refused at once after a refresh: the credentials are wrong, not stale. No refresh loop."""
    async with FakeX() as fake:
        alice = fake.users.create()

        async def expire_every_new_token(user: asyncx.BearerUser) -> None:
            fake.expire_token(user)

        bearer = _refreshable(fake, alice, expire_every_new_token, access_token="stale")
        async with fake.client() as client:
            with pytest.raises(asyncx.Unauthorized):
                await client.create_tweet(text="x", user=bearer)
        assert fake.refreshes == 1 and fake.count(401) == 2


async def test_failed_refresh_raises_unauthorized() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        bad = asyncx.BearerUser(
            access_token="expired", user_id=alice.user_id, refresh_token="spent", client_id=fake.client_id
        )
        async with fake.client() as client:
            with pytest.raises(asyncx.Unauthorized) as info:
                await client.create_tweet(text="x", user=bad)
        assert "spent" not in str(info.value) and "expired" not in str(info.value)
        assert fake.refreshes == 0 and fake.posts == {}


async def test_401_without_refresh_token_is_final() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        fake.expire_token(alice)
        plain = asyncx.BearerUser(access_token=alice.bearer.access_token, user_id=alice.user_id)
        async with fake.client() as client:
            with pytest.raises(asyncx.Unauthorized):
                await client.create_tweet(text="x", user=plain)
        assert fake.count(401) == 1


class _StoreDownOnce(asyncx.MemoryStore):
    """A store that cannot be reached for its first take, then answers."""

    synchronous = False

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def take(self, *args: object, **kw: object) -> asyncx.Taken:
        if self.failures:
            self.failures -= 1
            raise asyncx.StoreUnavailable("store unreachable")
        return await super().take(*args, **kw)  # type: ignore[arg-type]


async def test_an_unreachable_store_is_waited_out_before_anything_is_sent() -> None:
    transport, sent = _script(CREATED)
    sleeps: list[float] = []
    async with _client(transport, sleeps, store=_StoreDownOnce()) as client:
        post = await client.create_tweet(text="hi", user=BOB)
    assert post.id == "1" and len(sent) == 1 and len(sleeps) == 1


async def test_an_unreachable_store_with_retries_off_raises() -> None:
    transport, sent = _script(CREATED)
    async with _client(transport, retry=None, store=_StoreDownOnce()) as client:
        with pytest.raises(asyncx.StoreUnavailable):
            await client.create_tweet(text="hi", user=BOB)
    assert sent == []


POLL = {"options": ["yes", "no"], "duration_minutes": 60}


async def test_a_text_less_post_whose_answer_was_lost_is_found_by_reading_back_not_posted_twice() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        fake.drop_next(1)  # the poll is made, its answer lost
        async with fake.client(retry=FAST) as client:
            post = await client.create_tweet(poll=POLL, user=alice.bearer)
        assert len(fake.posts) == 1 and post.id in fake.posts
        assert post.poll_options == ("yes", "no")
        assert [e.endpoint for e in fake.log] == ["create_tweet", "user_tweets"]


async def test_a_text_less_post_that_never_landed_is_sent_again_after_reading_back() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        fake.add_post("an older post", alice)
        fake.fail_next(1, 503)  # nothing made, but a 5xx may have made it
        media_id = fake.add_media(alice)
        async with fake.client(retry=FAST) as client:
            post = await client.create_tweet(media={"media_ids": [media_id]}, user=alice.oauth1)
        assert len(fake.posts) == 2 and fake.posts[post.id].media_ids == (media_id,)
        assert [e.endpoint for e in fake.log] == ["create_tweet", "user_tweets", "create_tweet"]


async def test_another_post_of_the_same_user_is_not_taken_for_ours() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        other = fake.posts_by(alice)
        fake.fail_next(1, 503)
        async with fake.client(retry=FAST) as client:
            await client.create_tweet(poll={"options": ["a", "b"], "duration_minutes": 5}, user=alice.bearer)
            fake.fail_next(1, 503)
            second = await client.create_tweet(
                poll={"options": ["a", "c"], "duration_minutes": 5}, user=alice.bearer
            )
        assert other == [] and len(fake.posts) == 2 and fake.posts[second.id].poll_options == ("a", "c")


async def test_when_reading_back_is_impossible_the_call_ends_delivery_unknown_and_is_not_resent() -> None:
    reads = [asyncx.Response(403, {}, b'{"title": "Forbidden", "detail": "no read access"}')]
    transport, sent = _script(asyncx.TransportError("reset", maybe_delivered=True), *reads)
    async with _client(transport) as client:
        with pytest.raises(asyncx.DeliveryUnknown) as info:
            await client.create_tweet(quote_tweet_id="5", user=BOB)
    assert info.value.maybe_delivered is True
    assert [r.method for r in sent] == ["POST", "GET"]  # never posted a second time
