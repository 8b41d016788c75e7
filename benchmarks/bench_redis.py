"""The Redis store against the memory store in the same run, and three worker processes sharing budgets.

1. Throughput and latency: ``concurrency`` tasks doing ``async with scheduler.acquire(...)`` +
   ``permit.settle(response)`` for 1,000 users as fast as they can, once with the default memory store
   and once with a ``RedisStore`` on a local ``redis-server``; acquires per second, the mean time per
   acquire+settle, and the ratio of the two.
2. Makespan: three worker processes (``tests/redis_worker.py``) posting for the same 20 users through one
   Redis against ``asyncx.testing`` with short windows: 429s and makespan against the ideal.

    python benchmarks/bench_redis.py        (needs redis-server on PATH)
3. The same three workers on a local three-node Redis Cluster (``RedisStore(url, cluster=True)``).

Targets: zero 429s and makespan within 1.1x of ideal with three workers on one Redis, 1.2x on the
Cluster.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from email.utils import formatdate
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncx  # noqa: E402
from asyncx._ratelimit import Scheduler, read_answer  # noqa: E402
from asyncx.testing import FakeX  # noqa: E402
from tests.redis_server import RedisClusterServers, RedisServer  # noqa: E402
from tests.redis_worker import makespan, run_workers  # noqa: E402

LIMIT = asyncx.RateLimit(1_000_000, 900.0)


async def throughput(store: asyncx.Store | None, calls: int, concurrency: int) -> tuple[float, float]:
    """(acquires per second, mean seconds per acquire+settle)."""
    s = Scheduler({"create_tweet": LIMIT, "app:create_tweet": []}, store=store, max_in_flight=concurrency)
    now = time.time()
    headers = {
        "x-rate-limit-limit": "1000000",
        "x-rate-limit-remaining": "999000",
        "x-rate-limit-reset": str(int(now) + 900),
        "date": formatdate(now, usegmt=True),
    }
    response = read_answer(201, headers, now)
    names = [f"user{i}" for i in range(1000)]
    latencies: list[float] = []

    async def worker(k: int) -> None:
        for i in range(k, calls, concurrency):
            start = time.perf_counter()
            async with s.acquire(names[i % len(names)], "create_tweet") as permit:
                permit.settle(response)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - start
    await s.aclose()
    return calls / elapsed, sum(latencies) / len(latencies)


async def three_workers(
    redis_url: str, users_count: int = 20, per_worker: int = 4, cluster: bool = False
) -> None:
    limit, window = 4, 2.5
    async with FakeX(limits={"create_tweet": asyncx.RateLimit(limit, window)}) as fake:
        users = [fake.users.create() for _ in range(users_count)]
        with tempfile.TemporaryDirectory() as tmp:
            results = await run_workers(
                fake, redis_url, "bench", users, Path(tmp), per_worker, limit, window, cluster=cluster
            )
        actual, ideal = makespan(fake, users, 3 * per_worker, limit, window)
        errors = sum(sum(r["errors"].values()) for r in results)
        where = "3-node Redis Cluster" if cluster else "one Redis"
        print(
            f"{where}: 3 workers x {users_count} users x {3 * per_worker} posts, "
            f"{limit} per user per {window} s: "
            f"posts={len(fake.posts)} 429s={fake.count(429)} errors={errors} "
            f"makespan={actual:.2f}s ideal={ideal:.2f}s ratio={actual / ideal:.3f}"
        )


async def main() -> None:
    server = RedisServer()
    server.start()
    try:
        calls, concurrency = 20_000, 64
        memory_rate, memory_latency = await throughput(None, calls, concurrency)
        redis = asyncx.RedisStore(server.url, prefix="bench")
        redis_rate, redis_latency = await throughput(redis, calls, concurrency)
        print(f"{calls:,} acquire+settle, {concurrency} concurrent, 1,000 users:")
        print(f"  memory store: {memory_rate:>9,.0f} acquires/s  {memory_latency * 1e6:8.1f} us per call")
        print(f"  redis store:  {redis_rate:>9,.0f} acquires/s  {redis_latency * 1e6:8.1f} us per call")
        added = (redis_latency - memory_latency) * 1e6
        print(
            f"  redis / memory: throughput {redis_rate / memory_rate:.3f}x, "
            f"latency {redis_latency / memory_latency:.1f}x (+{added:.0f} us per call)"
        )
        _, single_latency = await throughput(asyncx.RedisStore(server.url, prefix="one"), 2_000, 1)
        print(f"  redis store, one call at a time: {single_latency * 1e6:.0f} us per acquire+settle")
        from redis.asyncio import Redis

        client = Redis.from_url(server.url)
        stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
        await client.aclose()
        per_script = float(stats.get("usec_per_call", 0.0))
        if per_script:
            print(
                f"  Redis spends {per_script:.0f} us per script (two per acquire): one server could take "
                f"~{1e6 / (2 * per_script):,.0f} acquires/s from many workers (one process is client-bound)"
            )
        await three_workers(server.url)
    finally:
        server.close()
    nodes = RedisClusterServers()
    nodes.start()
    try:
        await three_workers(nodes.url, cluster=True)
    finally:
        nodes.close()


if __name__ == "__main__":
    asyncio.run(main())
