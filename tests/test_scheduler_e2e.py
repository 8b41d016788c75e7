"""The scheduler end to end against FakeX over real sockets, with 1-second windows."""

import asyncio
import math
import time

import pytest

import asyncx
from asyncx.testing import FakeX

WINDOW = asyncx.RateLimit(2, 1.0)


async def _post_all(client: asyncx.Client, users: list, per_user: int) -> list[asyncx.Tweet]:
    calls = [
        client.create_tweet(text=f"{u.name} #{i}", user=u.bearer) for u in users for i in range(per_user)
    ]
    return await asyncio.gather(*calls)


@pytest.mark.parametrize("skew", [0.0, 300.0, -300.0])
async def test_configured_limit_zero_429s_and_every_call_sent(skew: float) -> None:
    async with FakeX(limits={"create_tweet": WINDOW}, skew=skew) as fake:
        users = [fake.users.create() for _ in range(6)]
        async with fake.client(rate_limits={"create_tweet": WINDOW}) as client:
            posts = await _post_all(client, users, 3)
            assert client.rate_stats().rate_limited == 0
        assert fake.count(429) == 0
        assert len(posts) == len(fake.posts) == 18
        for u in users:
            arrivals = [e.at for e in fake.log if e.user_id == u.user_id]
            assert len(arrivals) == 3
            # The next window opens once the last one's reset has passed on the server's clock, and soon
            # after: ``Date`` has whole seconds, so a burst's answers may pin the clock down only to ~1 s.
            reset = math.ceil(arrivals[0] + WINDOW.window_seconds)
            assert reset <= arrivals[2] <= reset + 1.3


async def test_learned_limit_at_most_one_429_per_budget() -> None:
    async with FakeX(limits={"create_tweet": WINDOW, "curate_collection": WINDOW}) as fake:
        users = [fake.users.create() for _ in range(4)]
        seed = fake.add_post("seed", users[0])
        async with fake.client() as client:  # nothing configured: the defaults are only a guess
            await _post_all(client, users, 4)
            changes = [
                client.curate_collection(f"custom-{i}", [{"op": "add", "tweet_id": seed.id}], user=u.oauth1)
                for u in users
                for i in range(4)
            ]
            await asyncio.gather(*changes)
        for u in users:
            assert (
                sum(1 for e in fake.log if e.status == 429 and e.user_id == u.user_id) <= 2
            )  # one per endpoint
        assert len(fake.posts) == 17


async def test_max_wait_refuses_without_sending() -> None:
    async with FakeX(limits={"create_tweet": asyncx.RateLimit(1, 30.0)}) as fake:
        alice = fake.users.create()
        async with fake.client(max_wait=1.0) as client:
            await client.create_tweet(text="one", user=alice.bearer)
            with pytest.raises(asyncx.RateLimited) as info:
                await client.create_tweet(text="two", user=alice.bearer)
            assert info.value.retry_at is not None and info.value.retry_at > time.time() + 20
            assert client.rate_stats(alice.bearer, "create_tweet").rejected == 1
        assert len(fake.log) == 1


async def test_a_429_is_waited_out_and_the_call_completes() -> None:
    async with FakeX(limits={"create_tweet": asyncx.RateLimit(1, 1.0)}) as fake:
        alice = fake.users.create()
        other = fake.client()
        async with other, fake.client(rate_limits={"create_tweet": asyncx.RateLimit(1, 1.0)}) as client:
            await other.create_tweet(text="elsewhere", user=alice.bearer)  # uses the window behind our back
            post = await client.create_tweet(text="mine", user=alice.bearer)
            assert post.text == "mine"
            assert client.rate_stats().rate_limited == 1
        assert fake.count(429) == 1
