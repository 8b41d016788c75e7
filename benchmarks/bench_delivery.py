"""Delivery under faults: every post lands exactly once, and what the retries cost in extra requests.

Against asyncx.testing with 15% 5xx answers, 5% connections dropped after the post was made, and jittered
latency; beside the same run without faults (the baseline: one request per post), and tweepy under the
same faults (it does not retry: what it loses is what a bare client loses).

Then posts without text (polls, which have no duplicate check to fall back on) under the same faults,
in one process and through ``asyncx post`` killed with SIGKILL several times mid-run: doubles and
lines left unknown are counted (both must be 0 where reads are allowed).

    python benchmarks/bench_delivery.py [--users 100 --posts 20 --seed 1 --kills 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path

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


def _poll(user: str, i: int) -> dict[str, object]:
    return {"options": [f"{user} {i}", "no"], "duration_minutes": 60}


def _doubles(fake: FakeX) -> int:
    counts = Counter(p.poll_options for p in fake.posts.values() if p.poll_options)
    return sum(n - 1 for n in counts.values())


async def run_textless(args: argparse.Namespace) -> tuple[int, int, int, int]:
    """Polls under faults, in one process: (delivered, doubles, unknown, requests)."""
    async with FakeX(limits=LIMITS, faults=FAULTS, seed=args.seed) as fake:
        users = [fake.users.create() for _ in range(args.users)]
        counts = Counter[str]()

        async def post(client: asyncx.Client, user: asyncx.BearerUser, i: int) -> None:
            try:
                await client.create_tweet(poll=_poll(user.user_id, i), user=user)
                counts["delivered"] += 1
            except asyncx.DeliveryUnknown:
                counts["unknown"] += 1
            except asyncx.XError:
                counts["failed"] += 1

        async with fake.client(rate_limits={**LIMITS, "app:create_tweet": []}, retry=RETRY) as client:
            await asyncio.gather(*(post(client, u.bearer, i) for u in users for i in range(args.posts)))
        return counts["delivered"], _doubles(fake), counts["unknown"], len(fake.log)


async def run_killed(args: argparse.Namespace, folder: Path) -> tuple[int, int, int, int]:
    """Polls through ``asyncx post``, SIGKILLed ``args.kills`` times mid-run under faults, then run to
    the end: (lines, posts on the server, doubles, lines not done)."""
    users, posts = min(args.users, 20), min(args.posts, 10)
    limits = {"create_tweet": asyncx.RateLimit(5, 1.0)}
    async with FakeX(limits=limits, faults=FAULTS, seed=args.seed) as fake:
        made = [fake.users.create() for _ in range(users)]
        creds = folder / "asyncx.toml"
        toml = [f'[app]\nconsumer_key = "{fake.consumer_key}"\nconsumer_secret = "{fake.consumer_secret}"']
        for u in made:
            toml.append(
                f'[users.{u.name}]\nbearer_token = "{u.bearer.access_token}"\nuser_id = "{u.user_id}"'
            )
        creds.write_text("\n".join(toml) + "\n")
        jobs = folder / "jobs.jsonl"
        lines = [{"user": u.name, "poll": _poll(u.user_id, i)} for i in range(posts) for u in made]
        jobs.write_text("".join(json.dumps(line) + "\n" for line in lines))
        command = [sys.executable, "-m", "asyncx", "post", str(jobs), "--credentials", str(creds)]
        command += ["--base-url", fake.base_url, "--report", str(folder / "report.json")]
        quiet = {"stdout": asyncio.subprocess.DEVNULL, "stderr": asyncio.subprocess.DEVNULL}
        for kill in range(args.kills):
            proc = await asyncio.create_subprocess_exec(*command, **quiet)  # type: ignore[arg-type]
            goal = len(lines) * (kill + 1) // (args.kills + 1)
            while len(fake.posts) < goal and proc.returncode is None:
                await asyncio.sleep(0.02)
            if proc.returncode is None:
                os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
        fake.faults = Faults()
        proc = await asyncio.create_subprocess_exec(*command, **quiet)  # type: ignore[arg-type]
        await proc.wait()
        summary = json.loads((folder / "report.json").read_text())["summary"]
        return len(lines), len(fake.posts), _doubles(fake), summary["lines"] - summary["done"]


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
    p.add_argument("--kills", type=int, default=3)
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
    delivered, doubles, unknown, requests = await run_textless(args)
    print(
        f"asyncx, {n} polls (no text) under the same faults: delivered {delivered}/{n}, doubles {doubles}, "
        f"unknown {unknown}; {requests / n:.3f} requests per poll (reads included)"
    )
    with tempfile.TemporaryDirectory() as folder:
        lines, on_server, doubles, not_done = await run_killed(args, Path(folder))
    print(
        f"asyncx post, {lines} polls, SIGKILLed {args.kills} times mid-run under the same faults, then "
        f"rerun: on the server {on_server}, doubles {doubles}, lines not done {not_done}"
    )


if __name__ == "__main__":
    asyncio.run(main())
