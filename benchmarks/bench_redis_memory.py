"""Bytes Redis holds per active user budget, measured through a real ``Client``.

Thousands of users each post once through one ``Client`` with a ``RedisStore`` against ``asyncx.testing``,
which reports both of X's windows on posts (the 15-minute one and the user's 24-hour cap), so every
budget has two windows in Redis. ``INFO memory``'s ``used_memory`` (less client buffers) before and after,
over the number of budgets, is the figure. User ids are 19 digits long, as X's are. The users post with
OAuth 1.0a; then the same with OAuth 2.0 users, whose refreshable token pairs Redis also keeps (a key per
user). The users post with OAuth 1.0a; then
the same with OAuth 2.0 users, whose refreshable token pairs Redis also keeps (one key per user).

    python benchmarks/bench_redis_memory.py [USERS]        (needs redis-server on PATH)
Target: at most 200 bytes per active budget.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncx  # noqa: E402
from asyncx.testing import FakeX  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

FIRST_ID = 1_790_000_000_000_000_000


async def used_memory(url: str) -> int:
    """What Redis holds, less its clients' buffers (they come and go with connections, not budgets)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    try:
        info = await redis.info("memory")
        return int(info["used_memory"]) - int(info["mem_clients_normal"])
    finally:
        await redis.aclose()


async def server_flush(url: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    try:
        await redis.flushall()
    finally:
        await redis.aclose()


async def keys(url: str) -> int:
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    try:
        return int(await redis.dbsize())
    finally:
        await redis.aclose()


async def measure(url: str, count: int, bearer: bool = False) -> float:
    async with FakeX(user_daily_limit=100, app_daily_limit=10_000_000) as fake:
        users = [fake.users.create(user_id=str(FIRST_ID + i)) for i in range(count + 1)]
        store = asyncx.RedisStore(url)
        async with fake.client(store=store, max_in_flight=200) as client:
            # The first post makes the app-wide key and loads the scripts: not a budget's cost.
            await client.create_tweet(text="warm up", user=users[0].bearer if bearer else users[0].oauth1)
            before, keys_before = await used_memory(url), await keys(url)
            await asyncio.gather(
                *(
                    client.create_tweet(text=f"post of {u.name}", user=u.bearer if bearer else u.oauth1)
                    for u in users[1:]
                )
            )
        after, keys_after = await used_memory(url), await keys(url)
        assert len(fake.posts) == count + 1 and fake.count(429) == 0
    if bearer:
        print(
            f"{count} OAuth 2.0 users posting once, with their token pairs shared: "
            f"{keys_after - keys_before} keys, {(after - before) / count:.0f} bytes per user"
        )
    else:
        print(
            f"{count} budgets with 2 windows each: {keys_after - keys_before} keys, "
            f"{after - before} bytes, {(after - before) / count:.0f} bytes per budget (target <= 200)"
        )
    return (after - before) / count


async def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    server = RedisServer()
    server.start()
    try:
        await measure(server.url, count)
        await server_flush(server.url)
        await measure(server.url, count, bearer=True)
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
