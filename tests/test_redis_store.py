"""Budgets shared through a real redis-server by several clients and several worker processes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import tenacity

import asyncx
from asyncx._ratelimit import Scheduler
from asyncx.testing import FakeX
from tests.redis_server import RedisClusterServers, RedisServer, free_port
from tests.redis_worker import makespan, run_workers


async def _post(client: asyncx.Client, users: list, per_user: int, tag: str) -> None:
    await asyncio.gather(
        *(
            client.create_tweet(text=f"{tag} {u.name} #{i}", user=u.bearer)
            for u in users
            for i in range(per_user)
        )
    )


async def test_two_clients_share_each_users_budget(make_store: Callable[[], asyncx.RedisStore]) -> None:
    window = asyncx.RateLimit(3, 1.0)
    async with FakeX(limits={"create_tweet": window}) as fake:
        users = [fake.users.create() for _ in range(5)]
        clients = [
            fake.client(
                rate_limits={"create_tweet": window},
                store=make_store(),
            )
            for _ in range(2)
        ]
        try:
            await asyncio.gather(*(_post(c, users, 3, f"c{i}") for i, c in enumerate(clients)))
        finally:
            for c in clients:
                await c.aclose()
        assert fake.count(429) == 0
        assert len(fake.posts) == 30


async def test_a_users_windows_are_one_small_key_that_expires(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """X reports the 15-minute window and the user's 24-hour cap: both live in one key, tagged by user,
    that expires after the longer window; the app-wide cap has a key of its own."""
    from redis.asyncio import Redis

    async with FakeX(user_daily_limit=100, app_daily_limit=10_000) as fake:
        user = fake.users.create(user_id="1790000000000000001")
        async with fake.client(store=asyncx.RedisStore(redis_server.url, prefix=redis_prefix)) as client:
            for i in range(3):
                await client.create_tweet(text=f"post {i}", user=user.bearer)
    redis = Redis.from_url(redis_server.url)
    try:
        # (besides the user's shared OAuth 2.0 pair, {tok:...})
        keys = sorted(k for k in await redis.keys(f"{redis_prefix}:*") if b"{tok:" not in k)
        assert keys == [
            f"{redis_prefix}:{{1790000000000000001}}t".encode(),
            f"{redis_prefix}:{{app:t}}".encode(),
        ]
        assert len(await redis.get(keys[0])) <= 44  # two windows, stored inline with the key's object
        assert 86_400_000 < await redis.pttl(keys[0]) <= (86_400 + 62) * 1000  # X's reset is whole seconds
    finally:
        await redis.aclose()


async def test_a_limit_learned_by_one_client_serves_the_other(
    make_store: Callable[[], asyncx.RedisStore],
) -> None:
    """Nothing configured: one probe per budget across both clients; the other waits for its answer."""
    window = asyncx.RateLimit(2, 1.0)
    async with FakeX(limits={"curate_collection": window}) as fake:
        users = [fake.users.create() for _ in range(3)]
        seed = fake.add_post("seed", users[0])
        clients = [fake.client(store=make_store()) for _ in range(2)]
        try:
            await asyncio.gather(
                *(
                    c.curate_collection(
                        f"custom-{u.user_id}", [{"op": "add", "tweet_id": seed.id}], user=u.oauth1
                    )
                    for c in clients
                    for u in users
                    for _ in range(3)
                )
            )
        finally:
            for c in clients:
                await c.aclose()
        assert fake.count(200, "curate_collection") == 18
        for u in users:
            assert sum(1 for e in fake.log if e.status == 429 and e.user_id == u.user_id) <= 1


async def test_max_wait_sees_what_another_client_spent(redis_server: RedisServer, redis_prefix: str) -> None:
    window = asyncx.RateLimit(2, 30.0)
    async with FakeX(limits={"create_tweet": window}) as fake:
        user = fake.users.create()
        first = fake.client(
            rate_limits={"create_tweet": window},
            store=asyncx.RedisStore(redis_server.url, prefix=redis_prefix),
        )
        second = fake.client(
            rate_limits={"create_tweet": window},
            store=asyncx.RedisStore(redis_server.url, prefix=redis_prefix),
        )
        async with first, second:
            await _post(first, [user], 2, "first")
            with pytest.raises(asyncx.RateLimited) as info:
                await second.create_tweet(text="one too many", user=user.bearer, max_wait=5.0)
            assert info.value.retry_at is not None and info.value.retry_at > fake.now() + 20
        assert fake.count() == 2 and fake.count(429) == 0


async def test_unreachable_redis_sends_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeX() as fake:
        user = fake.users.create()
        store = asyncx.RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
        async with fake.client(store=store, retry=None) as client:
            with pytest.raises(asyncx.StoreUnavailable):
                await client.create_tweet(text="never sent blind", user=user.bearer)
        assert fake.count() == 0


@pytest.mark.parametrize("cluster", [False, True], ids=["node", "cluster"])
async def test_three_worker_processes_share_20_users_without_a_429(
    request: pytest.FixtureRequest, redis_prefix: str, tmp_path: Path, cluster: bool
) -> None:
    where: RedisServer | RedisClusterServers = request.getfixturevalue(
        "redis_cluster" if cluster else "redis_server"
    )
    # 8 posts per user: two windows. X reports resets in whole seconds, so with a whole-second window
    # any wake-up after a reset, however prompt, would push the next reset a second later.
    limit, window, per_worker = 4, 2.5, 2
    async with FakeX(limits={"create_tweet": asyncx.RateLimit(limit, window)}) as fake:
        users = [fake.users.create() for _ in range(20)]
        results = await run_workers(
            fake, where.url, redis_prefix, users, tmp_path, per_worker, limit, window, cluster=cluster
        )
        assert all(r["errors"] == {} for r in results), results
        assert fake.count(429) == 0
        assert len(fake.posts) == 20 * 3 * per_worker
        actual, ideal = makespan(fake, users, 3 * per_worker, limit, window)
        assert actual / ideal <= (1.2 if cluster else 1.1), (actual, ideal)


async def test_redis_restart_mid_run_completes_and_posts_nothing_twice(
    redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer()
    server.start()
    try:
        limit, window = 3, 1.0
        async with FakeX(limits={"create_tweet": asyncx.RateLimit(limit, window)}) as fake:
            users = [fake.users.create() for _ in range(4)]
            store = asyncx.RedisStore(server.url, prefix=redis_prefix, timeout=0.5)
            # Short backoff, many attempts: the outage is waited out in small steps, never by a long sleep.
            patient = asyncx.RetryPolicy(
                stop=tenacity.stop_after_attempt(100),
                wait=tenacity.wait_random_exponential(multiplier=0.02, max=0.2),
                deadline=20.0,
            )
            async with fake.client(
                rate_limits={"create_tweet": asyncx.RateLimit(limit, window)}, store=store, retry=patient
            ) as client:
                job = asyncio.create_task(_post(client, users, 9, "restart"))
                while len(fake.posts) < 12:  # the first window's posts are in
                    await asyncio.sleep(0.01)
                server.stop()
                down_at = fake.now()
                # Down across a reset: waiting calls wake to no store. Wait for the failure itself.
                while "unreachable" not in caplog.text or fake.now() < down_at + window:
                    await asyncio.sleep(0.05)
                server.start()  # empty: the restarted Redis remembers nothing
                await asyncio.wait_for(job, 15)
        texts = [p.text for p in fake.posts.values()]
        assert len(texts) == len(set(texts)) == 36
        assert fake.count(403) == 0  # no duplicate refused either: nothing was sent twice
    finally:
        server.close()


async def test_a_worker_that_dies_mid_probe_holds_others_only_for_the_flight_ttl(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """The first send of an unknown window is out when its process dies: the others wait for its
    answer, but no longer than the flight TTL (not the whole 15-minute window)."""
    loop = asyncio.get_running_loop()
    first = asyncx.RedisStore(redis_server.url, prefix=redis_prefix)
    dead = Scheduler(store=first, flight_ttl=0.5)
    await dead.acquire("u", "curate_collection").__aenter__()  # granted; its process "dies" here
    await first.aclose()
    other = Scheduler(store=asyncx.RedisStore(redis_server.url, prefix=redis_prefix), flight_ttl=0.5)
    started = loop.time()
    async with other.acquire("u", "curate_collection"):
        waited = loop.time() - started
    await other.aclose()
    assert 0.3 <= waited < 3.0
