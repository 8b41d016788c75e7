"""Two worker processes sharing expiring OAuth 2.0 tokens through Redis.

Both post for the same users against ``asyncx.testing``, whose access tokens live ``LIFETIME`` seconds,
so every user's token expires several times during the run while both processes use it. Reported: posts,
errors, refresh tokens spent twice (X would lock the user out), and per user the refreshes against the
expiries the run spanned.

    python benchmarks/bench_tokens.py        (needs redis-server on PATH)
Targets: 0 reused refresh tokens; refreshes <= expiries + 1 for every user.
"""

from __future__ import annotations

import asyncio
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncx  # noqa: E402
from asyncx.testing import FakeX  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.redis_worker import run_workers  # noqa: E402

USERS, PER_WORKER, LIFETIME, LIMIT, WINDOW = 50, 20, 2.0, 5, 1.0


async def main() -> None:
    server = RedisServer()
    server.start()
    try:
        limits = {"create_tweet": asyncx.RateLimit(LIMIT, WINDOW)}
        async with FakeX(limits=limits, token_lifetime=LIFETIME) as fake:
            users = [fake.users.create() for _ in range(USERS)]
            started = fake.now()
            with tempfile.TemporaryDirectory() as tmp:
                results = await run_workers(
                    fake, server.url, "bench", users, Path(tmp), PER_WORKER, LIMIT, WINDOW, count=2
                )
            span = fake.now() - started
            expiries = math.ceil(span / LIFETIME)
            errors = sum(sum(r["errors"].values()) for r in results)
            most = max(fake.refreshes_by_user[u.user_id] for u in users)
            over = sum(1 for u in users if fake.refreshes_by_user[u.user_id] > expiries + 1)
            print(
                f"2 processes x {USERS} users x {PER_WORKER} posts each, tokens live {LIFETIME:g} s, "
                f"run {span:.1f} s: posts={len(fake.posts)} errors={errors} 401s={fake.count(401)}"
                + "".join(f" {r['errors']}" for r in results if r["errors"])
            )
            print(
                f"  refreshes={fake.refreshes} reused refresh tokens={fake.refresh_reuses} "
                f"most refreshes of one user={most} expiries spanned={expiries} "
                f"users over expiries+1={over} (targets: 0 reused, 0 over)"
            )
    finally:
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
