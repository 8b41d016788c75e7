"""``python -m asyncx.testing``: serve FakeX standalone, for programs in other processes or languages.

It serves HTTPS with a throw-away certificate authority (``--http`` for plain HTTP on loopback), prints
one JSON line on stdout with the base URL, the CA bundle's path, the app's keys and the test users'
credentials (OAuth 1.0a tokens, OAuth 2.0 access and refresh tokens, the OAuth 2.0 client id), and on
stderr a ``curl`` line for one call; then it serves until interrupted. ``--state FILE`` keeps users,
tokens and posts between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

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
    p.add_argument(
        "--media-processing", type=float, default=2.0, help="seconds a video or GIF takes to process"
    )
    p.add_argument(
        "--token-lifetime", type=float, default=None, help="seconds an OAuth 2.0 access token lives"
    )
    p.add_argument(
        "--http", action="store_true", help="serve plain HTTP instead of HTTPS (loopback use only)"
    )
    p.add_argument("--tls", action="store_true", help=argparse.SUPPRESS)  # HTTPS is the default now
    p.add_argument(
        "--state", metavar="FILE", help="keep users, tokens, posts and bookmarks in FILE between runs"
    )
    p.add_argument(
        "--ca-file",
        metavar="FILE",
        help="where to write the CA bundle (default: beside --state, or a temp dir)",
    )
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
        tls=not args.http,
        host=args.host,
        port=args.port,
        state=args.state,
        media_processing=args.media_processing,
        token_lifetime=args.token_lifetime,
    )


def _ca_path(args: argparse.Namespace) -> Path:
    if args.ca_file:
        return Path(args.ca_file)
    if args.state:
        return Path(args.state).with_name(Path(args.state).name + ".ca.pem")
    return Path(tempfile.mkdtemp(prefix="fakex-")) / "ca.pem"


def _info(fake: FakeX, ca_file: Path | None) -> dict[str, object]:
    users = list(fake.users)
    info: dict[str, object] = {
        "base_url": fake.base_url,
        "consumer_key": fake.consumer_key,
        "consumer_secret": fake.consumer_secret,
        "client_id": fake.client_id,
        "users": [
            {
                "name": u.name,
                "user_id": u.user_id,
                "access_token": u.oauth1.access_token,
                "access_token_secret": u.oauth1.access_token_secret,
                "bearer_token": u.bearer.access_token,
                "refresh_token": u.bearer.refresh_token,
            }
            for u in users
        ],
    }
    if fake.certificate is not None and ca_file is not None:
        info["ca_bundle"] = str(ca_file)
        info["ca_certificate"] = fake.certificate
    return info


def _curl(fake: FakeX, ca_file: Path | None) -> str:
    """One call any shell can make: the first user's ``GET /2/users/me``."""
    user = next(iter(fake.users))
    parts = ["curl", "-sS"]
    if ca_file is not None:
        parts += ["--cacert", str(ca_file)]
    parts += ["-H", f"Authorization: Bearer {user.bearer.access_token}", fake.base_url + "/2/users/me"]
    return shlex.join(parts)


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with _fake(args) as fake:
        for _ in range(max(0, args.users - len(fake.users))):  # a saved state brings its users back
            fake.users.create()
        ca_file = None
        if fake.certificate is not None:
            ca_file = _ca_path(args)
            ca_file.write_text(fake.certificate, encoding="ascii")
        print(json.dumps(_info(fake, ca_file)), flush=True)
        print(f"FakeX serving {fake.base_url}", file=sys.stderr)
        if ca_file is not None:
            print(f"CA bundle: {ca_file}", file=sys.stderr)
        if len(fake.users):
            print(f"try: {_curl(fake, ca_file)}", file=sys.stderr, flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(serve(_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
