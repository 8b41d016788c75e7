"""Delivery under faults: every post lands exactly once, and what the retries cost in extra requests.

Against asyncx.testing with 15% 5xx answers, 5% connections dropped after the post was made, and jittered
latency; beside the same run without faults (the baseline: one request per post), and tweepy under the
same faults (it does not retry: what it loses is what a bare client loses).

    python benchmarks/bench_delivery.py [--users 100 --posts 20 --seed 1]
"""

from __future__ import annotations

import argparse
import asyncio

import tenacity
import tweepy.asynchronous

import asyncx
from asyncx.testing import FakeX, Faults

from _support import pinned_session

FAULTS = Faults(error_rate=0.15, drop_rate=0.05, latency=0.003, jitter=0.002)
LIMITS = {"create_tweet": asyncx.RateLimit(100_000, 900.0)}
RETRY = asyncx.RetryPolicy(wait=tenacity.wait_random_exponential(multiplier=0.01, max=0.2))


async def run_asyncx(args: argparse.Namespace, faults: Faults) -> tuple[int, int, int, int]:
    async with FakeX(limits=LIMITS, faults=faults, seed=args.seed) as fake:
        users = [fake.users.create() for _ in range(args.users)]
        outcomes = {"posted": 0, "already": 0, "failed": 0}

        async def post(client: asyncx.Client, user: asyncx.BearerUser, text: str) -> None:
            try:
                await client.create_tweet(text=text, user=user)
                outcomes["posted"] += 1
            except asyncx.AlreadyPosted:
                outcomes["already"] += 1
            except asyncx.XError:
                outcomes["failed"] += 1

        async with fake.client(rate_limits={**LIMITS, "app:create_tweet": []}, retry=RETRY) as client:
            await asyncio.gather(
                *(post(client, u.bearer, f"{u.name} {i}") for u in users for i in range(args.posts))
            )
        texts = [p.text for p in fake.posts.values()]
        assert len(texts) == len(set(texts)), "a post was made twice"
        delivered = outcomes["posted"] + outcomes["already"]
        return delivered, len(fake.posts), len(fake.log), outcomes["already"]


async def run_tweepy(args: argparse.Namespace) -> tuple[int, int]:
    async with FakeX(limits=LIMITS, faults=FAULTS, seed=args.seed, tls=True) as fake:
        users = [fake.users.create() for _ in range(args.users)]
        assert fake.certificate is not None
        delivered = 0
        async with pinned_session(int(fake.base_url.rsplit(":", 1)[1]), fake.certificate) as session:

            async def post(user: asyncx.BearerUser, text: str) -> None:
                nonlocal delivered
                client = tweepy.asynchronous.AsyncClient(user.access_token)
                client.session = session
                try:
                    await client.create_tweet(text=text, user_auth=False)
                    delivered += 1
                except Exception:
                    pass

            await asyncio.gather(*(post(u.bearer, f"{u.name} {i}") for u in users for i in range(args.posts)))
        return delivered, len(fake.posts)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--posts", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    n = args.users * args.posts
    _, _, base_requests, _ = await run_asyncx(args, Faults())
    delivered, on_server, requests, already = await run_asyncx(args, FAULTS)
    tw_delivered, tw_on_server = await run_tweepy(args)
    print(f"{n} posts for {args.users} users; faults: 15% 5xx, 5% dropped after commit, 3±2 ms latency")
    print(f"baseline (no faults): {base_requests / n:.3f} requests per post")
    print(
        f"asyncx: delivered/attempted {delivered}/{n} ({delivered / n:.1%}); on the server {on_server} "
        f"(each once); {already} known only through AlreadyPosted"
    )
    extra = (requests - delivered) / delivered
    print(
        f"asyncx: {requests / delivered:.3f} requests per delivered post ({extra:.3f} extra; "
        f"{(requests / delivered) / (base_requests / n):.2f}x baseline)"
    )
    print(
        f"tweepy (no retries): reported delivered {tw_delivered}/{n} ({tw_delivered / n:.1%}); "
        f"actually on the server {tw_on_server}"
    )


if __name__ == "__main__":
    asyncio.run(main())
