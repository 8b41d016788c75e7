"""Worker processes of a multi-process job sharing budgets through Redis (test_redis_store, bench_redis).

    python -m tests.redis_worker BASE_URL REDIS_URL PREFIX USERS_JSON WORKER PER_USER LIMIT WINDOW [cluster]

Posts ``PER_USER`` posts for every user in ``USERS_JSON`` (``[[user_id, access token, refresh token,
client id], ...]``: tokens that expire are refreshed through Redis, once for all workers) and prints
a JSON summary: posts made, 429s this worker saw, and errors by type. ``run_workers`` starts several.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import asyncx
from asyncx.testing import FakeUser, FakeX, ideal_makespan

ROOT = Path(__file__).resolve().parent.parent


async def run_workers(
    fake: FakeX,
    redis_url: str,
    prefix: str,
    users: list[FakeUser],
    directory: Path,
    per_user: int,
    limit: int,
    window: float,
    count: int = 3,
    cluster: bool = False,
) -> list[dict[str, Any]]:
    """Run ``count`` worker processes posting for ``users`` against ``fake``; their JSON summaries."""
    users_file = directory / "users.json"
    users_file.write_text(
        json.dumps(
            [[u.user_id, u.bearer.access_token, u.bearer.refresh_token, fake.client_id] for u in users]
        )
    )
    args = [fake.base_url, redis_url, prefix, str(users_file)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.redis_worker",
            *args,
            str(i),
            str(per_user),
            str(limit),
            str(window),
            *(["cluster"] if cluster else []),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for i in range(count)
    ]
    results = []
    for proc in procs:
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed: {err.decode()[-2000:]}")
        results.append(json.loads(out))
    return results


def makespan(
    fake: FakeX, users: list[FakeUser], posts: int, limit: int, window: float
) -> tuple[float, float]:
    """(the job's makespan, the ideal one). Each user's windows anchor on that user's first post, which a
    burst spreads over a moment, so the ideal ends where the last user's last window could open."""
    firsts = [min(p.created_at for p in fake.posts_by(u)) for u in users]
    first = min(firsts)
    ideal_end = max(f + ideal_makespan(f, posts, limit, window) for f in firsts)
    last = max(p.created_at for p in fake.posts.values())
    return last - first, ideal_end - first


async def main(argv: list[str]) -> dict[str, object]:
    base_url, redis_url, prefix, users_file, worker, per_user, limit, window, *cluster = argv
    with open(users_file, encoding="utf-8") as f:
        users = [
            asyncx.BearerUser(access_token=token, user_id=uid, refresh_token=refresh, client_id=client)
            for uid, token, refresh, client in json.load(f)
        ]
    rate = {"create_tweet": asyncx.RateLimit(int(limit), float(window))}
    store = asyncx.RedisStore(redis_url, prefix=prefix, cluster=cluster == ["cluster"])
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
