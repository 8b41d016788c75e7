"""A bulk job on a Redis Streams queue: ``asyncx post --queue``, ``asyncx work``, ``asyncx status`` and
``asyncx.bulk.run(client, RedisQueue(...))``, against FakeX and a real Redis (one node and a Cluster)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

import asyncx
from asyncx.bulk import RedisQueue, run
from asyncx.bulk._jobs import load_credentials
from asyncx.testing import FakeX
from tests.redis_server import RedisClusterServers, RedisServer
from tests.test_bulk import _cli, _credentials, _jobs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["node", "cluster"])
def redis_where(request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    """A Redis URL and the options that say which kind it is."""
    if request.param == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        return cluster.url, ["--redis-cluster"]
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url, []


async def _status(url: str, name: str, *extra: str) -> dict[str, int]:
    code, out, err = await _cli("status", "--redis", url, "--queue", name, "--json", *extra)
    assert code == 0, err
    counts: dict[str, int] = json.loads(out)
    return counts


async def _start(*args: str | Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asyncx",
        *map(str, args),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _texts(fake: FakeX) -> Counter[str]:
    return Counter(p.text for p in fake.posts.values())


async def test_workers_share_a_queue_and_a_killed_ones_lines_are_taken_over(
    tmp_path: Path, redis_where: tuple[str, list[str]], redis_prefix: str
) -> None:
    """post fills the queue and works it; two workers join; one is SIGKILLed mid-run. Every line ends
    posted exactly once, status says so, and a report from any worker covers the whole queue."""
    url, kind = redis_where
    name = f"job-{redis_prefix}"
    # 2 posts per user per second: 18 lines in flight wait for budget, so a worker holds lines.
    limit = asyncx.RateLimit(2, 1.0)
    async with FakeX(limits={"create_tweet": limit}) as fake:
        users = {f"u{i}": fake.users.create(f"u{i}") for i in range(6)}
        creds = _credentials(tmp_path, fake, users)
        lines = [{"user": f"u{i % 6}", "text": f"queued line {i}"} for i in range(36)]
        jobs = _jobs(tmp_path, lines)
        common = [
            "--redis", url, "--queue", name, "--credentials", creds, "--base-url", fake.base_url,
            "--claim-after", "1", "--rate-limit", "create_tweet=2/1", "--concurrency", "6", *kind,
        ]  # fmt: skip
        # post works one line at a time: the workers that join take most of the queue.
        poster = await _start("post", jobs, *common, "--concurrency", "1", "--report", tmp_path / "post.json")
        watch = RedisQueue(url, name, cluster=bool(kind))
        try:
            while (await watch.counts()).queued + fake.count() < 36:
                await asyncio.sleep(0.02)  # the lines are being added: nothing to await across processes
        finally:
            await watch.aclose()
        workers = [await _start("work", *common, "--report", tmp_path / f"w{i}.json") for i in range(2)]
        spawned, posted = asyncio.get_running_loop().time(), len(fake.posts)
        deadline = asyncio.get_running_loop().time() + 20
        while await _held_by(url, bool(kind), name, workers[0].pid) == 0 or len(fake.posts) < 6:
            if workers[0].returncode is not None or asyncio.get_running_loop().time() > deadline:
                if workers[0].returncode is None:
                    workers[0].kill()
                out, err = await workers[0].communicate()
                took = asyncio.get_running_loop().time() - spawned
                raise AssertionError(
                    f"the worker never took a line ({posted} posts at its start, {took:.1f}s): "
                    f"{err.decode()[-3000:]}{out.decode()[:300]}"
                )
            await asyncio.sleep(0.05)
        workers[0].send_signal(signal.SIGKILL)  # dies holding lines, some of them in flight
        await workers[0].wait()
        assert await _held_by(url, bool(kind), name, workers[0].pid) > 0  # until claimed
        out, err = await asyncio.wait_for(workers[1].communicate(), 60)
        assert workers[1].returncode == 0, err.decode()[-2000:]
        out, err = await asyncio.wait_for(poster.communicate(), 60)
        assert poster.returncode == 0, err.decode()[-2000:]
        texts = _texts(fake)
        assert sorted(texts) == sorted(line["text"] for line in lines)
        assert set(texts.values()) == {1}  # nothing lost, nothing posted twice
        assert fake.count(429) == 0
    counts = await _status(url, name, *kind)
    assert counts == {"queued": 0, "in_flight": 0, "done": 36, "failed": 0, "unknown": 0, "retryable": 0}
    report = json.loads((tmp_path / "w1.json").read_text())
    assert len(report["lines"]) == 36 and {e["status"] for e in report["lines"]} == {"done"}
    assert report["summary"]["done"] == 36 and report["summary"]["this_worker"]["lines"] < 36


async def test_posting_the_same_file_again_adds_nothing_and_an_edit_adds_the_changed_line(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> None:
    name = f"again-{redis_prefix}"
    async with FakeX() as fake:
        users = {"ann": fake.users.create("ann")}
        creds = _credentials(tmp_path, fake, users)
        common = [
            "--redis",
            redis_server.url,
            "--queue",
            name,
            "--credentials",
            creds,
            "--base-url",
            fake.base_url,
        ]
        jobs = _jobs(tmp_path, [{"user": "ann", "text": f"first {i}"} for i in range(3)])
        code, _, err = await _cli("post", jobs, *common)
        assert code == 0, err
        assert "3 line(s) added" in err
        code, _, err = await _cli("post", jobs, *common)
        assert code == 0 and "0 line(s) added" in err
        assert len(fake.posts) == 3
        # The operator edits the file: one line changed, one inserted before the others.
        edited = [
            {"user": "ann", "text": "inserted"},
            {"user": "ann", "text": "first 0"},
            {"user": "ann", "text": "first 1, edited"},
            {"user": "ann", "text": "first 2"},
        ]
        jobs = _jobs(tmp_path, edited)
        code, _, err = await _cli("post", jobs, *common)
        assert code == 0 and "2 line(s) added" in err, err
        assert sorted(_texts(fake)) == sorted(
            ["first 0", "first 1", "first 2", "first 1, edited", "inserted"]
        )


async def test_work_on_an_unreachable_redis_says_so(tmp_path: Path) -> None:
    from tests.redis_server import free_port

    async with FakeX() as fake:
        creds = _credentials(tmp_path, fake, {"ann": fake.users.create("ann")})
        code, _, err = await _cli(
            "work", "--redis", f"redis://:s3cret@127.0.0.1:{free_port()}/0", "--queue", "q",
            "--credentials", creds, "--base-url", fake.base_url,
        )  # fmt: skip
        assert code == 2 and "job queue 'q' at redis://" in err and "connecting" in err, err
        assert "s3cret" not in err and len(fake.posts) == 0


async def _held_by(url: str, cluster: bool, name: str, pid: int) -> int:
    """Lines the worker with process id ``pid`` holds in the queue's consumer group."""
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    redis: Redis = RedisCluster.from_url(url) if cluster else Redis.from_url(url)  # type: ignore[assignment]
    try:
        consumers = await redis.xinfo_consumers(f"asyncx:{{q:{name}}}:s", "workers")
    finally:
        await redis.aclose()
    return sum(int(c["pending"]) for c in consumers if f":{pid}:" in c["name"].decode())


async def _claimable(queue: RedisQueue, dead: str) -> None:
    """Read one line as a worker named ``dead`` that then dies: it stays pending, owned by nobody alive."""
    from redis.asyncio import Redis

    redis = Redis.from_url(queue._url)
    try:
        await redis.xreadgroup("workers", dead, {queue._stream: ">"}, count=1)
    finally:
        await redis.aclose()


async def test_a_claimed_post_without_text_that_landed_is_read_back_not_sent_again(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> None:
    """A worker recorded a quote post (no text) as sending, sent it and died. The worker that claims
    the line reads the user's posts back, finds it, and does not post it again."""
    async with FakeX() as fake:
        user = fake.users.create("ann")
        seed = fake.add_post("seed", user)
        creds = load_credentials(_credentials(tmp_path, fake, {"ann": user}))
        line = json.dumps({"user": "ann", "quote_tweet_id": seed.id})
        name = f"quote-{redis_prefix}"
        first = RedisQueue(redis_server.url, name, credentials=creds, claim_after=0.3)
        second = RedisQueue(redis_server.url, name, credentials=creds, claim_after=0.3)
        try:
            assert await first.enqueue([(1, line)]) == 1
            # The first worker takes the line, records it as sending, and its post lands; then it dies.
            taken = first.__aiter__()
            item = await anext(taken)
            await first.sending_soon(item.key, item.digest)
            async with fake.client() as client:
                await client.create_tweet(quote_tweet_id=seed.id, user=user.oauth1)
            await taken.aclose()  # it dies: no more heartbeats keep its line
            async with fake.client() as client:
                outcomes = [o async for o in run(client, second)]
            assert (await second.counts()).done == 1
        finally:
            await first.aclose()
            await second.aclose()
        assert len(outcomes) == 1 and outcomes[0].status == "done", outcomes
        assert sum(1 for p in fake.posts.values() if p.quote_tweet_id == seed.id) == 1


async def test_a_claimed_line_never_recorded_as_sending_is_sent_as_new(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> None:
    async with FakeX() as fake:
        user = fake.users.create("ann")
        creds = load_credentials(_credentials(tmp_path, fake, {"ann": user}))
        name = f"fresh-{redis_prefix}"
        queue = RedisQueue(redis_server.url, name, credentials=creds, claim_after=0.2)
        try:
            await queue.enqueue([(1, json.dumps({"user": "ann", "text": "taken, never sent"}))])
            await _claimable(queue, "dead-worker")
            async with fake.client() as client:
                outcomes = [o async for o in run(client, queue)]
        finally:
            await queue.aclose()
        assert [o.status for o in outcomes] == ["done"] and outcomes[0].tweet_id is not None
        assert _texts(fake) == {"taken, never sent": 1}


async def test_a_stopped_worker_hands_its_lines_back_at_once(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> None:
    """stop(): lines not started go back to the queue for others (no wait for claim_after)."""
    window = asyncx.RateLimit(2, 2.0)
    async with FakeX(limits={"create_tweet": window}) as fake:
        users = {n: fake.users.create(n) for n in ("ann", "bob")}
        creds = load_credentials(_credentials(tmp_path, fake, users))
        name = f"stop-{redis_prefix}"
        lines = [(i + 1, json.dumps({"user": "ann", "text": f"ann {i}"})) for i in range(4)]
        first = RedisQueue(redis_server.url, name, credentials=creds, claim_after=300.0)
        second = RedisQueue(redis_server.url, name, credentials=creds, claim_after=300.0)
        try:
            await first.enqueue(lines)
            async with fake.client(rate_limits={"create_tweet": window}) as client:
                done = []
                async for outcome in run(client, first, concurrency=4):
                    done.append(outcome)
                    if len(done) == 2:  # the rest wait for the next window: stop instead
                        first.stop()
                        await client.aclose(grace=0.1)
            counts = await second.counts()
            assert counts.done == 2 and counts.queued == 2 and counts.in_flight == 0  # handed back
            # Handed back: another worker claims them at once, though claim_after is five minutes.
            async with fake.client(rate_limits={"create_tweet": window}) as client:
                later = [o async for o in run(client, second)]
        finally:
            await first.aclose()
            await second.aclose()
        assert sorted(o.status for o in later) == ["done", "done"]
        assert _texts(fake) == Counter({f"ann {i}": 1 for i in range(4)})


async def test_status_of_a_queue_never_filled_is_all_zero_and_makes_nothing(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    from redis.asyncio import Redis

    name = f"typo-{redis_prefix}"
    counts = await _status(redis_server.url, name)
    assert counts == {"queued": 0, "in_flight": 0, "done": 0, "failed": 0, "unknown": 0, "retryable": 0}
    redis = Redis.from_url(redis_server.url)
    try:
        assert await redis.keys(f"asyncx:{{q:{name}}}*") == []
    finally:
        await redis.aclose()


async def test_a_mistyped_secret_is_named_and_the_fixed_rerun_finishes_the_queue(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> None:
    async with FakeX() as fake:
        users = {"ann": fake.users.create("ann")}
        good = _credentials(tmp_path, fake, users)
        bad = tmp_path / "bad.toml"
        bad.write_text(good.read_text().replace(fake.consumer_secret, "typo-secret-xyz"))
        jobs = _jobs(tmp_path, [{"user": "ann", "text": f"typo {i}"} for i in range(3)])
        common = ["--redis", redis_server.url, "--queue", f"typo-{redis_prefix}", "--base-url", fake.base_url]
        code, out, err = await _cli("post", jobs, *common, "--credentials", bad)
        assert code == 1 and "user 'ann': credentials refused (401); 3 line(s) not done" in err, err
        assert "typo-secret" not in out + err and len(fake.posts) == 0
        # The worker says why, in X's words, under its table, as a jobs-file run does.
        assert re.search(r"(?m)^Unauthorized: 401", out + err), out + err
        code, _, err = await _cli("post", jobs, *common, "--credentials", good)
        assert code == 0 and "3 line(s) added" in err, err
        assert _texts(fake) == Counter({f"typo {i}": 1 for i in range(3)})
