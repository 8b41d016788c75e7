"""``python -m asyncx.testing``: serve FakeX standalone, for programs in other processes or languages.

It prints one JSON line with the base URL, the app's keys and the test users' credentials (all made
up for this run), then serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from .._models import RateLimit
from ._server import FakeX, Faults


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m asyncx.testing", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--users", type=int, default=2, help="test users to create (default 2)")
    p.add_argument("--window", type=float, default=900.0, help="window seconds for every endpoint")
    p.add_argument("--tweet-limit", type=int, default=100, help="posts per user per window")
    p.add_argument("--bookmark-limit", type=int, default=50, help="bookmarks per user per window")
    p.add_argument("--collection-limit", type=int, default=300, help="collection calls per user per window")
    p.add_argument("--user-daily-limit", type=int, default=None, help="posts per user per 24 hours")
    p.add_argument("--app-daily-limit", type=int, default=None, help="posts per app per 24 hours")
    p.add_argument("--fail-rate", type=float, default=0.0, help="chance of a 503 before any effect")
    p.add_argument(
        "--drop-rate", type=float, default=0.0, help="chance of dropping the answer after the effect"
    )
    p.add_argument("--latency", type=float, default=0.0, help="seconds of delay per request")
    p.add_argument("--jitter", type=float, default=0.0, help="± seconds of random extra delay")
    p.add_argument(
        "--skew", type=float, default=0.0, help="seconds the server's clock is ahead (negative: behind)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tls", action="store_true", help="serve HTTPS with a throw-away self-signed certificate")
    return p


def _fake(args: argparse.Namespace) -> FakeX:
    limits = {
        "create_tweet": RateLimit(args.tweet_limit, args.window),
        "bookmark": RateLimit(args.bookmark_limit, args.window),
        "add_collection_entry": RateLimit(args.collection_limit, args.window),
        "curate_collection": RateLimit(args.collection_limit, args.window),
    }
    faults = Faults(
        error_rate=args.fail_rate, drop_rate=args.drop_rate, latency=args.latency, jitter=args.jitter
    )
    return FakeX(
        limits=limits,
        user_daily_limit=args.user_daily_limit,
        app_daily_limit=args.app_daily_limit,
        skew=args.skew,
        faults=faults,
        seed=args.seed,
        tls=args.tls,
        host=args.host,
        port=args.port,
    )


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with _fake(args) as fake:
        users = [fake.users.create() for _ in range(args.users)]
        info: dict[str, object] = {
            "base_url": fake.base_url,
            "consumer_key": fake.consumer_key,
            "consumer_secret": fake.consumer_secret,
            "users": [
                {
                    "name": u.name,
                    "user_id": u.user_id,
                    "access_token": u.oauth1.access_token,
                    "access_token_secret": u.oauth1.access_token_secret,
                    "bearer_token": u.bearer.access_token,
                }
                for u in users
            ],
        }
        if fake.certificate is not None:
            info["ca_certificate"] = fake.certificate
        print(json.dumps(info), flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(serve(_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
