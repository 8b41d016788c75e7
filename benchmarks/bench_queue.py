"""One bulk job on a Redis Streams queue, worked by four processes: makespan, 429s, Redis round trips per
post, and, with a worker killed by SIGKILL mid-run, lines lost or posted twice.

``asyncx post JOBS --redis URL --queue NAME`` fills the queue and works it; three ``asyncx work``
processes join. The users' posts are rate limited by ``asyncx.testing`` (in this process), which every
worker shares through one ``redis-server``. Two runs: one undisturbed (makespan against the ideal, round
trips from each worker's report), one where a worker is killed once a third of the lines are posted
(its lines are claimed after ``--claim-after`` 3 seconds; grants it left in flight stop counting after
at most 5 s). Then the enqueuer's peak memory for 20,000 and
200,000 lines (``asyncx post --queue`` streams the file).

    python benchmarks/bench_queue.py [--users 200 --lines 10000]        (needs redis-server on PATH)
Targets: 0 avoidable 429s; makespan <= 1.1x ideal; 0 lost, 0 doubled; <= 3 Redis round trips per post.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncx  # noqa: E402
from asyncx.bulk import RedisQueue  # noqa: E402
from asyncx.testing import FakeX  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.redis_worker import makespan  # noqa: E402
from tests.test_bulk import _credentials  # noqa: E402
from tests.test_queue import _start  # noqa: E402

# X reports resets in whole seconds: with a whole-second window, any wake-up after a reset, however
# prompt, would anchor the next window a second later than the ideal. Windows much shorter make the
# run CPU-bound on a 2-core machine (four workers, the fake and Redis share it).
LIMIT, WINDOW = 10, 8.5


async def job(redis_url: str, tmp: Path, users_count: int, lines: int, kill: bool, name: str) -> None:
    limits = {"create_tweet": asyncx.RateLimit(LIMIT, WINDOW)}
    async with FakeX(limits=limits) as fake:
        users = {f"u{i}": fake.users.create(f"u{i}") for i in range(users_count)}
        creds = _credentials(tmp, fake, users)
        jobs = tmp / f"{name}.jsonl"
        with jobs.open("w") as f:
            for i in range(lines):
                f.write(json.dumps({"user": f"u{i % users_count}", "text": f"{name} line {i}"}) + "\n")
        common = [
            "--redis", redis_url, "--queue", name, "--credentials", creds, "--base-url", fake.base_url,
            "--claim-after", "3", "--rate-limit", f"create_tweet={LIMIT}/{WINDOW:g}",
            "--rate-limit", "app:create_tweet=10000000/86400",
        ]  # fmt: skip
        started = time.monotonic()
        procs = [await _start("post", jobs, *common, "--report", tmp / f"{name}-0.json")]
        watch = RedisQueue(redis_url, name)
        try:
            while (await watch.counts()).queued + len(fake.posts) < lines:
                await asyncio.sleep(0.05)
            procs += [await _start("work", *common, "--report", tmp / f"{name}-{i}.json") for i in (1, 2, 3)]
            if kill:
                while len(fake.posts) < lines // 3:
                    await asyncio.sleep(0.05)
                procs[1].send_signal(signal.SIGKILL)
            for proc in procs:
                _, err = await proc.communicate()
                if proc.returncode not in (0, -signal.SIGKILL):
                    raise RuntimeError(f"a worker failed ({proc.returncode}): {err.decode()[-2000:]}")
            counts = await watch.counts()
        finally:
            await watch.aclose()
        elapsed = time.monotonic() - started
        texts = Counter(p.text for p in fake.posts.values())
        lost = lines - len(texts)
        doubled = sum(n - 1 for n in texts.values())
        actual, ideal = makespan(fake, list(users.values()), lines // users_count, LIMIT, WINDOW)
        trips = ended = 0
        for i in range(4):
            path = tmp / f"{name}-{i}.json"
            if path.is_file():
                mine = json.loads(path.read_text())["summary"]
                if "this_worker" not in mine:
                    continue  # the killed worker's report, as it started
                ended += mine["this_worker"]["lines"]
                trips += (mine["redis_round_trips_per_line"] or 0) * mine["this_worker"]["lines"]
        what = "one worker SIGKILLed at a third" if kill else "undisturbed"
        print(
            f"4 processes, {users_count} users, {lines:,} lines, {LIMIT} per user per {WINDOW:g} s ({what}): "
            f"{elapsed:.1f} s, done={counts.done} failed={counts.failed} unknown={counts.unknown} "
            f"429s={fake.count(429)} lost={lost} doubled={doubled}"
        )
        print(
            f"  makespan {actual:.2f}s ideal {ideal:.2f}s ratio {actual / ideal:.3f} "
            "(target <= 1.1 undisturbed)"
        )
        if ended and not kill:
            print(f"  Redis round trips per post: {trips / ended:.2f} (target <= 3), over {ended:,} lines")


def enqueue_memory(redis_url: str, tmp: Path, count: int) -> float:
    """Peak RSS (MiB) of a child that enqueues ``count`` lines from a file (the worker part excluded)."""
    code = (
        "import asyncio, resource, sys\n"
        "from asyncx.bulk import RedisQueue\n"
        "from asyncx.bulk._jobs import load_credentials, read_lines\n"
        "async def main():\n"
        "    q = RedisQueue(sys.argv[1], sys.argv[2], credentials=load_credentials(sys.argv[3]))\n"
        "    await q.enqueue(read_lines(sys.argv[4]))\n"
        "    await q.aclose()\n"
        "asyncio.run(main())\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    creds = tmp / "memory.toml"
    creds.write_text('[users.ann]\naccess_token = "1-abc"\naccess_token_secret = "secret"\n')
    jobs = tmp / f"memory-{count}.jsonl"
    with jobs.open("w") as f:
        for i in range(count):
            f.write(json.dumps({"user": "ann", "text": f"memory line {i} " + "x" * 60}) + "\n")
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", code, redis_url, f"memory-{count}", str(creds), str(jobs)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return float(out.strip())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--lines", type=int, default=10_000)
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await job(server.url, Path(tmp), args.users, args.lines, False, "calm")
            await job(server.url, Path(tmp), args.users, args.lines, True, "killed")
            small = enqueue_memory(server.url, Path(tmp), 20_000)
            large = enqueue_memory(server.url, Path(tmp), 200_000)
            print(
                f"enqueue peak RSS: {small:.0f} MiB for 20,000 lines, {large:.0f} MiB for 200,000 "
                f"({large / small:.2f}x)"
            )
    finally:
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
