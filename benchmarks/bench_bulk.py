"""Bulk job throughput, peak memory and the journal's cost.

1. ``asyncx.bulk.run`` posting ``--lines`` items for ``--users`` users against FakeX in another process
   (so the figure is bound by asyncx's own CPU, not the fake's) with generous limits, with the SQLite
   journal and without it (the baseline, same run, rounds alternating, best of ``--rounds``): lines per
   second and the journal's cost per line as a ratio. Target: >= 2,000 lines/s with the journal.
2. ``asyncx post`` as a separate process against a FakeX server process, for a small and a large jobs file:
   its peak memory (RSS) should stay flat as the file grows, since the file is streamed.

    python benchmarks/bench_bulk.py [--lines 100000 --users 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import asyncx
from asyncx import bulk

from _support import ServerProcess

GENEROUS = {"create_tweet": asyncx.RateLimit(1_000_000, 900.0)}
CLIENT_LIMITS = {**GENEROUS, "app:create_tweet": []}


async def api_run(lines: int, users: int, journal: Path | None) -> float:
    args = ("--http", "--users", str(users), "--tweet-limit", "1000000")
    async with ServerProcess(*args) as server:
        info = server.info
        made = [
            asyncx.BearerUser(access_token=u["bearer_token"], user_id=u["user_id"]) for u in info["users"]
        ]

        def items():
            for i in range(lines):
                yield bulk.Item(f"line:{i}", asyncx.CreateTweet(text=f"post {i}"), made[i % users])

        async with asyncx.Client(base_url=info["base_url"], rate_limits=CLIENT_LIMITS) as client:
            start = time.perf_counter()
            done = 0
            async for outcome in bulk.run(client, items(), journal=journal, concurrency=200):
                done += outcome.ok
            elapsed = time.perf_counter() - start
        assert done == lines
        return lines / elapsed


async def cli_peak_rss(lines: int, users: int, tmp: Path) -> float:
    jobs = tmp / f"jobs-{lines}.jsonl"
    with jobs.open("w") as f:
        for i in range(lines):
            f.write(json.dumps({"user": f"u{i % users}", "text": f"u{i % users} post {i}"}) + "\n")
    async with ServerProcess("--http", "--users", str(users), "--tweet-limit", "1000000") as server:
        info = server.info
        creds = tmp / "creds.toml"
        rows = [
            "[app]",
            f'consumer_key = "{info["consumer_key"]}"',
            f'consumer_secret = "{info["consumer_secret"]}"',
        ]
        for i, u in enumerate(info["users"]):
            rows += [f"[users.u{i}]", f'bearer_token = "{u["bearer_token"]}"', f'user_id = "{u["user_id"]}"']
        creds.write_text("\n".join(rows) + "\n")
        code = (
            "import resource, sys; from asyncx._cli import main; rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            "post",
            str(jobs),
            "--credentials",
            str(creds),
            "--base-url",
            info["base_url"],
            "--journal",
            str(tmp / f"j{lines}.sqlite"),
            "--concurrency",
            "200",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]
        return int(err.decode().strip().splitlines()[-1]) / 1024  # KiB -> MiB


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lines", type=int, default=100_000)
    p.add_argument("--users", type=int, default=1_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        without = with_journal = 0.0
        for round_ in range(args.rounds):
            without = max(without, await api_run(args.lines, args.users, None))
            journal = Path(tmp) / f"bench{round_}.journal.sqlite"
            with_journal = max(with_journal, await api_run(args.lines, args.users, journal))
        print(
            f"{args.lines:,} lines for {args.users:,} users, FakeX in another process, best of {args.rounds}"
        )
        print(f"  without journal: {without:8.0f} lines/s (baseline)")
        print(
            f"  with journal:    {with_journal:8.0f} lines/s; journal cost per line "
            f"{(1 / with_journal - 1 / without) * 1e6:.0f} us, {without / with_journal:.2f}x the time"
        )
        small = await cli_peak_rss(args.lines // 10, args.users, Path(tmp))
        large = await cli_peak_rss(args.lines, args.users, Path(tmp))
        print(
            f"asyncx post peak RSS: {small:.0f} MiB for {args.lines // 10:,} lines, {large:.0f} MiB for "
            f"{args.lines:,} lines ({large / small:.2f}x for 10x the lines)"
        )


if __name__ == "__main__":
    asyncio.run(main())
