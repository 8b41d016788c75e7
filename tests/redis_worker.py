"""One worker process of a multi-process job sharing budgets through Redis (used by test_redis_store).

    python -m tests.redis_worker BASE_URL REDIS_URL PREFIX USERS_JSON WORKER PER_USER LIMIT WINDOW

Posts ``PER_USER`` posts for every user in ``USERS_JSON`` (``[[user_id, bearer token], ...]``) and prints
a JSON summary: posts made, 429s this worker saw, and errors by type.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter

import asyncx


async def main(argv: list[str]) -> dict[str, object]:
    base_url, redis_url, prefix, users_file, worker, per_user, limit, window = argv
    with open(users_file, encoding="utf-8") as f:
        users = [asyncx.BearerUser(access_token=token, user_id=uid) for uid, token in json.load(f)]
    rate = {"create_tweet": asyncx.RateLimit(int(limit), float(window))}
    store = asyncx.RedisStore(redis_url, prefix=prefix)
    errors: Counter[str] = Counter()
    async with asyncx.Client(base_url=base_url, rate_limits=rate, store=store) as client:

        async def post(user: asyncx.BearerUser, i: int) -> None:
            try:
                await client.create_tweet(text=f"worker {worker} user {user.user_id} post {i}", user=user)
            except asyncx.XError as exc:
                errors[type(exc).__name__] += 1

        await asyncio.gather(*(post(u, i) for u in users for i in range(int(per_user))))
        stats = client.rate_stats()
        clock = client.scheduler.server_clock
    return {
        "sent": stats.sent,
        "rate_limited": stats.rate_limited,
        "errors": dict(errors),
        "clock_doubt": clock.high - clock.low,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:]))))
