"""OAuth 2.0 tokens shared through Redis: one refresh for the fleet, never a spent refresh token reused."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path

import asyncx
from asyncx.testing import FakeUser, FakeX
from tests.redis_server import RedisServer
from tests.redis_worker import run_workers


def _copy(fake: FakeX, user: FakeUser, refreshed: list[str] | None = None) -> asyncx.BearerUser:
    """The user as one process holds it: its own object with the pair the credentials file gave."""
    return asyncx.BearerUser(
        access_token=user.bearer.access_token,
        user_id=user.user_id,
        refresh_token=user.bearer.refresh_token,
        client_id=fake.client_id,
        on_refresh=None if refreshed is None else (lambda u: refreshed.append(u.access_token)),
    )


async def test_an_expired_token_is_refreshed_once_for_every_client(
    make_store: Callable[[], asyncx.RedisStore],
) -> None:
    async with FakeX() as fake:
        user = fake.users.create()
        refreshed: list[str] = []
        copies = [_copy(fake, user, refreshed) for _ in range(2)]
        clients = [fake.client(store=make_store()) for _ in range(2)]
        try:
            await asyncio.gather(
                *(
                    c.create_tweet(text=f"first {i}", user=u)
                    for i, (c, u) in enumerate(zip(clients, copies, strict=True))
                )
            )
            fake.expire_token(user.bearer)
            await asyncio.gather(
                *(
                    c.create_tweet(text=f"then {i}.{k}", user=u)
                    for i, (c, u) in enumerate(zip(clients, copies, strict=True))
                    for k in range(5)
                )
            )
        finally:
            for c in clients:
                await c.aclose()
        assert len(fake.posts) == 12
        assert fake.refreshes == 1 and fake.refresh_reuses == 0
        assert len(refreshed) == 1  # on_refresh ran once, in the process that refreshed
        assert copies[0].access_token == copies[1].access_token == refreshed[0]
        assert copies[0].refresh_token == copies[1].refresh_token


async def test_a_process_started_with_a_spent_pair_uses_the_stored_one(
    make_store: Callable[[], asyncx.RedisStore],
) -> None:
    async with FakeX() as fake:
        user = fake.users.create()
        early = _copy(fake, user)
        async with fake.client(store=make_store()) as first:
            await first.create_tweet(text="early", user=early)
            fake.expire_token(user.bearer)
            await first.create_tweet(text="refreshed", user=early)
        assert fake.refreshes == 1
        late = _copy(fake, user)  # the credentials file still holds the pair that was spent
        async with fake.client(store=make_store()) as second:
            await second.create_tweet(text="late", user=late)
        assert fake.refreshes == 1 and fake.refresh_reuses == 0 and fake.count(401) == 1
        assert late.access_token == early.access_token and late.refresh_token == early.refresh_token


async def test_a_refresh_lock_left_by_a_dead_process_is_taken_over(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    from redis.asyncio import Redis

    async with FakeX() as fake:
        user = fake.users.create()
        redis = Redis.from_url(redis_server.url)
        try:
            # A process took the lock to refresh and died: the lock lapses after its time to live.
            await redis.set(f"{redis_prefix}:{{tok:{user.user_id}}}:lock", "dead", px=300)
        finally:
            await redis.aclose()
        fake.expire_token(user.bearer)
        async with fake.client(store=asyncx.RedisStore(redis_server.url, prefix=redis_prefix)) as client:
            await client.create_tweet(text="after the lock", user=_copy(fake, user))
        assert fake.refreshes == 1 and len(fake.posts) == 1


async def test_a_dead_stored_pair_gives_way_to_the_pair_this_process_was_given(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """The user authorised the app again: Redis still holds the old pair, whose refresh token X refuses."""
    from redis.asyncio import Redis

    async with FakeX() as fake:
        user = fake.users.create()
        redis = Redis.from_url(redis_server.url)
        key = f"{redis_prefix}:{{tok:{user.user_id}}}"
        try:
            await redis.set(key, '{"a":"old-access-token","r":"old-refresh-token"}')
            async with fake.client(store=asyncx.RedisStore(redis_server.url, prefix=redis_prefix)) as client:
                mine = _copy(fake, user)
                await client.create_tweet(text="with the new grant", user=mine)
            assert len(fake.posts) == 1 and fake.refreshes == 0
            assert mine.access_token == user.bearer.access_token
            assert user.bearer.access_token.encode() in await redis.get(key)
        finally:
            await redis.aclose()


async def test_a_store_without_shared_tokens_refreshes_in_process() -> None:
    async with FakeX() as fake:
        user = fake.users.create()
        mine = _copy(fake, user)
        async with fake.client() as client:
            fake.expire_token(user.bearer)
            await asyncio.gather(*(client.create_tweet(text=f"post {i}", user=mine) for i in range(3)))
        assert fake.refreshes == 1 and len(fake.posts) == 3


async def test_two_worker_processes_share_expiring_tokens(
    redis_server: RedisServer, redis_prefix: str, tmp_path: Path
) -> None:
    """Tokens live one second; two processes post for five users for about three: each expiry is
    refreshed by one process, and no refresh token is ever spent twice."""
    lifetime, limit, window, per_worker = 1.0, 4, 1.0, 6
    async with FakeX(
        limits={"create_tweet": asyncx.RateLimit(limit, window)}, token_lifetime=lifetime
    ) as fake:
        users = [fake.users.create() for _ in range(5)]
        started = fake.now()
        results = await run_workers(
            fake, redis_server.url, redis_prefix, users, tmp_path, per_worker, limit, window, count=2
        )
        span = fake.now() - started
        assert all(r["errors"] == {} for r in results), results
        assert len(fake.posts) == 5 * 2 * per_worker
        assert fake.refresh_reuses == 0
        expiries = math.ceil(span / lifetime)
        assert fake.refreshes >= 5  # the run outlived the first tokens
        assert all(fake.refreshes_by_user[u.user_id] <= expiries + 1 for u in users), (
            fake.refreshes_by_user,
            expiries,
        )
