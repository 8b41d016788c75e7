"""Makespan of a rate-limited backlog against asyncx.testing, beside tweepy in the same run.

50 users x 10 posts, 5 posts per user per 10 s window (the issue's figures; change with flags). For each
client: posts made, 429s earned, and makespan against the ideal, where the ideal is the start of the last
window the server could open: each window opens at the previous one's reset, which the server anchors
on the first request it sees and reports as a whole second.

    python benchmarks/bench_makespan.py [--users 50 --posts 10 --limit 5 --window 10]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import tweepy.asynchronous

import asyncx
from asyncx.testing import FakeX, ideal_makespan

from _support import pinned_session


def report(name: str, fake: FakeX, users: list, args: argparse.Namespace, wall: float) -> float:
    ratios = []
    for u in users:
        arrivals = sorted(e.at for e in fake.log if e.user_id == u.user_id and e.status == 201)
        ideal = ideal_makespan(arrivals[0], args.posts, args.limit, args.window)
        ratios.append((arrivals[-1] - arrivals[0]) / ideal if ideal else 1.0)
    first = min(e.at for e in fake.log)
    last = max(e.at for e in fake.log if e.status == 201)
    ideal = ideal_makespan(first, args.posts, args.limit, args.window)
    overall = (last - first) / ideal if ideal else 1.0
    print(
        f"{name:<34} posts={len(fake.posts):>5} 429s={fake.count(429):>4} makespan={last - first:6.2f}s "
        f"ideal={ideal:6.2f}s ratio={overall:5.3f} worst-user-ratio={max(ratios):5.3f} wall={wall:6.2f}s"
    )
    return overall


async def run_asyncx(args: argparse.Namespace, configured: bool) -> float:
    limit = asyncx.RateLimit(args.limit, args.window)
    async with FakeX(limits={"create_tweet": limit}, tls=True) as fake:
        users = [fake.users.create() for _ in range(args.users)]
        rate_limits = {"create_tweet": limit} if configured else None
        async with fake.client(rate_limits=rate_limits) as client:
            start = time.monotonic()
            await asyncio.gather(
                *(
                    client.create_tweet(text=f"{u.name} post {i}", user=u.bearer)
                    for i in range(args.posts)
                    for u in users
                )
            )
            wall = time.monotonic() - start
        label = "asyncx (limit configured)" if configured else "asyncx (limit learned)"
        return report(label, fake, users, args, wall)


async def run_tweepy(args: argparse.Namespace) -> float:
    async with FakeX(limits={"create_tweet": asyncx.RateLimit(args.limit, args.window)}, tls=True) as fake:
        users = [fake.users.create() for _ in range(args.users)]
        assert fake.certificate is not None
        port = int(fake.base_url.rsplit(":", 1)[1])
        async with pinned_session(port, fake.certificate) as session:
            clients = []
            for u in users:
                c = tweepy.asynchronous.AsyncClient(u.bearer.access_token, wait_on_rate_limit=True)
                c.session = session
                clients.append(c)
            start = time.monotonic()
            await asyncio.gather(
                *(
                    c.create_tweet(text=f"{u.name} post {i}", user_auth=False)
                    for i in range(args.posts)
                    for u, c in zip(users, clients, strict=True)
                )
            )
            wall = time.monotonic() - start
        return report("tweepy AsyncClient(wait_on_rate_limit)", fake, users, args, wall)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--posts", type=int, default=10)
    p.add_argument("--limit", type=int, default=5)
    p.add_argument("--window", type=float, default=10.0)
    args = p.parse_args()
    print(f"{args.users} users x {args.posts} posts, {args.limit} per user per {args.window:g} s window")
    configured = await run_asyncx(args, configured=True)
    await run_asyncx(args, configured=False)
    await run_tweepy(args)
    print(f"target: asyncx (configured) ratio <= 1.05 and zero 429s -> ratio {configured:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
