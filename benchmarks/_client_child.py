"""One client in a fresh process, for ``bench_client_cpu.py --whole-process``: it imports only what its
variant needs, posts ``requests`` times to the server described on stdin, and exits.

    python benchmarks/_client_child.py VARIANT REQUESTS CONCURRENCY < server-info.json
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Any


async def _many(make: Callable[[int], Awaitable[None]], requests: int, concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await make(i)

    await asyncio.gather(*(one(i) for i in range(requests)))


async def raw(info: dict[str, Any], user: dict[str, str], requests: int, concurrency: int, tag: str) -> None:
    import aiohttp

    ctx = ssl.create_default_context(cadata=info["ca_certificate"])
    url = info["base_url"] + "/2/tweets"
    headers = {"Authorization": f"Bearer {user['bearer_token']}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=100)) as session:

        async def post(i: int) -> None:
            async with session.post(url, data=json.dumps({"text": f"{tag} {i}"}), headers=headers) as resp:
                body = json.loads(await resp.read())
                assert resp.status == 201, body

        await _many(post, requests, concurrency)


async def with_asyncx(
    info: dict[str, Any], user: dict[str, str], requests: int, concurrency: int, tag: str, oauth1: bool
) -> None:
    import asyncx

    ctx = ssl.create_default_context(cadata=info["ca_certificate"])
    limits = {"create_tweet": asyncx.RateLimit(100_000_000, 900.0), "app:create_tweet": []}
    keys = (info["consumer_key"], info["consumer_secret"])
    who: asyncx.OAuth1User | asyncx.BearerUser = (
        asyncx.OAuth1User(user["access_token"], user["access_token_secret"])
        if oauth1
        else asyncx.BearerUser(access_token=user["bearer_token"], user_id=user["user_id"])
    )
    async with asyncx.Client(*keys, base_url=info["base_url"], ssl=ctx, rate_limits=limits) as client:

        async def post(i: int) -> None:
            await client.create_tweet(text=f"{tag} {i}", user=who)

        await _many(post, requests, concurrency)


async def with_tweepy(
    info: dict[str, Any], user: dict[str, str], requests: int, concurrency: int, tag: str
) -> None:
    import tweepy.asynchronous

    from _support import pinned_session

    port = int(info["base_url"].rsplit(":", 1)[1])
    async with pinned_session(port, info["ca_certificate"]) as session:
        client = tweepy.asynchronous.AsyncClient(
            consumer_key=info["consumer_key"],
            consumer_secret=info["consumer_secret"],
            access_token=user["access_token"],
            access_token_secret=user["access_token_secret"],
        )
        client.session = session

        async def post(i: int) -> None:
            await client.create_tweet(text=f"{tag} {i}", user_auth=True)

        await _many(post, requests, concurrency)


def main() -> None:
    variant, requests, concurrency, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    info = json.loads(sys.stdin.read())
    user = info["users"][0]
    if variant == "raw":
        asyncio.run(raw(info, user, requests, concurrency, tag))
    elif variant in ("asyncx-bearer", "asyncx-oauth1"):
        asyncio.run(with_asyncx(info, user, requests, concurrency, tag, variant == "asyncx-oauth1"))
    else:
        asyncio.run(with_tweepy(info, user, requests, concurrency, tag))


if __name__ == "__main__":
    main()
