"""Client CPU per request against a local FakeX in another process, beside raw aiohttp and tweepy.

Only the client process's CPU time is counted (the server runs in a child process). Each variant posts
``--requests`` unique posts, ``--concurrency`` at a time, over TLS; variants alternate for ``--rounds``
rounds and the median is reported.

    python benchmarks/bench_client_cpu.py [--requests 3000 --concurrency 64 --rounds 3]
Targets: asyncx with a bearer user <= 1.3x raw aiohttp; asyncx with an OAuth 1.0a user below tweepy.

``--whole-process`` instead runs each client in a fresh process (``_client_child.py``), import included,
and counts that process's whole CPU: what a cron bot or a short job pays. Targets there: bearer <= 1.3x
raw aiohttp, OAuth 1.0a <= 0.8x tweepy.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import ssl
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import tweepy.asynchronous

import asyncx

from _support import ServerProcess, compile_asyncx, pinned_session

_texts = itertools.count()


def text() -> str:
    return f"benchmark post {next(_texts)}"


async def measure(make: Callable[[], Awaitable[None]], requests: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await make()

    start = time.process_time()
    await asyncio.gather(*(one() for _ in range(requests)))
    return (time.process_time() - start) / requests * 1e6


CHILDREN = {
    "raw aiohttp (bearer)": "raw",
    "asyncx (bearer)": "asyncx-bearer",
    "asyncx (OAuth 1.0a)": "asyncx-oauth1",
    "tweepy (OAuth 1.0a)": "tweepy",
}


async def whole_process(args: argparse.Namespace) -> None:
    """Each client in a fresh process, its import included; the CPU of that whole process."""
    child = str(Path(__file__).with_name("_client_child.py"))
    compile_asyncx()
    async with ServerProcess("--users", "1", "--tweet-limit", "100000000") as server:
        info = json.dumps(server.info).encode()
        results: dict[str, list[float]] = {name: [] for name in CHILDREN}
        for round_ in range(args.rounds):
            for name, variant in CHILDREN.items():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    child,
                    variant,
                    str(args.requests),
                    str(args.concurrency),
                    f"{variant} round {round_}",
                    stdin=asyncio.subprocess.PIPE,
                    cwd=str(Path(__file__).parent),
                )
                await proc.communicate(info)
                assert proc.returncode == 0, f"{name} failed"
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                results[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    print(f"whole process, {args.requests} posts each, import included (median of {args.rounds}):")
    report(results, "ms CPU", 1000, "<= 0.8x")


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--whole-process", action="store_true", help="a fresh process per client, import included")
    args = p.parse_args()
    if args.whole_process:
        await whole_process(args)
        return
    async with ServerProcess("--users", "1", "--tweet-limit", "100000000") as server:
        info, user = server.info, server.info["users"][0]
        ctx = ssl.create_default_context(cadata=info["ca_certificate"])
        url = info["base_url"] + "/2/tweets"
        bearer = asyncx.BearerUser(access_token=user["bearer_token"], user_id=user["user_id"])
        oauth1 = asyncx.OAuth1User(user["access_token"], user["access_token_secret"])
        limits = {"create_tweet": asyncx.RateLimit(100_000_000, 900.0), "app:create_tweet": []}
        raw_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=100))
        keys = (info["consumer_key"], info["consumer_secret"])
        client = asyncx.Client(*keys, base_url=info["base_url"], ssl=ctx, rate_limits=limits)
        tweepy_session = pinned_session(server.port, info["ca_certificate"])
        tw = tweepy.asynchronous.AsyncClient(
            consumer_key=info["consumer_key"],
            consumer_secret=info["consumer_secret"],
            access_token=user["access_token"],
            access_token_secret=user["access_token_secret"],
        )
        tw.session = tweepy_session

        async def raw() -> None:
            headers = {"Authorization": f"Bearer {user['bearer_token']}", "Content-Type": "application/json"}
            async with raw_session.post(url, data=json.dumps({"text": text()}), headers=headers) as resp:
                body = json.loads(await resp.read())
                assert resp.status == 201, body

        async def asyncx_bearer() -> None:
            await client.create_tweet(text=text(), user=bearer)

        async def asyncx_oauth1() -> None:
            await client.create_tweet(text=text(), user=oauth1)

        async def tweepy_oauth1() -> None:
            await tw.create_tweet(text=text(), user_auth=True)

        variants = {
            "raw aiohttp (bearer)": raw,
            "asyncx (bearer)": asyncx_bearer,
            "asyncx (OAuth 1.0a)": asyncx_oauth1,
            "tweepy (OAuth 1.0a)": tweepy_oauth1,
        }
        results: dict[str, list[float]] = {name: [] for name in variants}
        for make in variants.values():  # warm up connections and caches
            await measure(make, 50, args.concurrency)
        for _ in range(args.rounds):
            for name, make in variants.items():
                results[name].append(await measure(make, args.requests, args.concurrency))
        await raw_session.close()
        await client.aclose()
        await tweepy_session.close()
    report(results, "us CPU per request", 1, "< 1.0x")


def report(results: dict[str, list[float]], unit: str, scale: float, oauth_target: str) -> None:
    """Medians per variant, and the two ratios the targets are about."""
    med = {name: statistics.median(v) for name, v in results.items()}
    for name, value in med.items():
        print(f"{name:<22} {value * scale:8.1f} {unit}")
    bearer_ratio = med["asyncx (bearer)"] / med["raw aiohttp (bearer)"]
    oauth_ratio = med["asyncx (OAuth 1.0a)"] / med["tweepy (OAuth 1.0a)"]
    print(f"asyncx bearer / raw aiohttp: {bearer_ratio:.2f}x (target <= 1.3x)")
    print(f"asyncx OAuth 1.0a / tweepy:  {oauth_ratio:.2f}x (target {oauth_target})")


if __name__ == "__main__":
    asyncio.run(main())
