"""The store contract, run against both stores: the in-memory one and Redis (a real redis-server).

Each test drives ``take``/``settle``/``refund``/``view`` with explicit times, so the two stores must
agree exactly: the Redis scripts are the memory store's rules made atomic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import asyncx
from asyncx import Answer, MemoryStore, RedisStore, Store, WindowSpec
from tests.redis_server import RedisClusterServers, RedisServer

T0 = 1_700_000_000.0


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "cluster":
        # Each test window is its own key, so a budget of several spans hash slots: one script each.
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        redis = RedisStore(cluster.url, prefix=redis_prefix, redis_time=False, cluster=True)
        yield redis
        await redis.aclose()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    redis = RedisStore(server.url, prefix=redis_prefix, redis_time=False)
    yield redis
    await redis.aclose()


def spec(
    limit: int | None = 3, seconds: float = 10.0, key: str = "u/create_tweet/window", **kw: bool
) -> WindowSpec:
    return WindowSpec(key, limit, seconds, **kw)


def reading(limit: int, remaining: int, reset: float) -> Answer:
    return Answer(200, [(limit, remaining, int(reset))])


async def test_a_window_grants_its_limit_then_waits_for_an_answer(store: Store) -> None:
    w = [spec()]
    assert (await store.take(w, 5, T0, None)).granted == 3
    blocked = await store.take(w, 1, T0, None)
    # Three in flight and no answer yet: the window's reset is X's to say.
    assert blocked.granted == 0 and blocked.wake_at is None and blocked.waiting_on == w[0].key
    for _ in range(3):
        await store.settle(w, 1, reading(3, 0, T0 + 10), T0 + 0.2, None)
    parked = await store.take(w, 1, T0 + 0.3, None)
    assert parked.granted == 0 and parked.wake_at == pytest.approx(T0 + 10)
    # The next window: one probe first, so a server that reopens late refuses one send, not three.
    assert (await store.take(w, 5, T0 + 10, None)).granted == 1
    await store.settle(w, 1, reading(3, 2, T0 + 20), T0 + 10.1, None)
    assert (await store.take(w, 5, T0 + 10.1, None)).granted == 2  # then the rest of it


async def test_only_a_429_says_when_room_comes_back(store: Store) -> None:
    """A 200 that empties a window parks the window, but ``settle`` answers a reset for 429s only (the
    memory store and the Redis script once disagreed here)."""
    w = [spec()]
    assert (await store.take(w, 3, T0, None)).granted == 3
    assert await store.settle(w, 1, reading(3, 0, T0 + 10), T0 + 0.2, None) is None
    refused = await store.settle(w, 1, Answer(429, [(3, 0, int(T0 + 10))]), T0 + 0.3, None)
    assert refused == pytest.approx(T0 + 10)
    assert (await store.take(w, 1, T0 + 0.4, None)).wake_at == pytest.approx(T0 + 10)


async def test_a_429_whose_reset_is_not_credible_leaves_the_known_reset_standing(store: Store) -> None:
    """Reset 0 (dropped as impossible) or passed, while the window's own reset is still ahead: the budget
    waits for the reset it knows, rather than probing every second or parking a whole window."""
    w = [spec()]
    assert (await store.take(w, 2, T0, None)).granted == 2
    await store.settle(w, 1, reading(3, 1, T0 + 10), T0 + 0.2, None)
    back = await store.settle(w, 1, Answer(429, [(3, 0, 0)]), T0 + 0.3, None)
    assert back == pytest.approx(T0 + 10)
    assert (await store.take(w, 1, T0 + 5, None)).granted == 0
    assert (await store.take(w, 1, T0 + 10, None)).granted == 1


async def test_a_429_at_a_reset_that_has_passed_costs_one_probe_per_retry(store: Store) -> None:
    """X reopens late: the probe at the reset is refused with the old reset; one probe a second follows."""
    w = [spec()]
    assert (await store.take(w, 3, T0, None)).granted == 3
    for _ in range(3):
        await store.settle(w, 1, reading(3, 0, T0 + 10), T0 + 0.2, None)
    assert (await store.take(w, 3, T0 + 10, None)).granted == 1
    late = Answer(429, [(3, 0, int(T0 + 10))])
    back = await store.settle(w, 1, late, T0 + 10.05, None)
    assert back == pytest.approx(T0 + 11.05)
    assert (await store.take(w, 3, T0 + 10.5, None)).granted == 0
    assert (await store.take(w, 3, T0 + 11.1, None)).granted == 1  # one probe again, not a burst


async def test_no_headers_anchors_the_window_a_window_from_now(store: Store) -> None:
    w = [spec(limit=2)]
    assert (await store.take(w, 2, T0, None)).granted == 2
    for _ in range(2):
        await store.settle(w, 1, Answer(201, []), T0 + 0.1, None)
    parked = await store.take(w, 1, T0 + 1, None)
    assert parked.granted == 0 and parked.wake_at == pytest.approx(T0 + 11)
    assert (await store.take(w, 1, T0 + 10.9, None)).granted == 0  # never refills inside a window
    assert (await store.take(w, 1, T0 + 11, None)).granted == 1


async def test_x_says_fewer_remain_than_we_counted(store: Store) -> None:
    w = [spec(limit=10)]
    assert (await store.take(w, 1, T0, None)).granted == 1
    await store.settle(w, 1, reading(10, 2, T0 + 10), T0 + 0.1, None)  # others used the rest
    assert (await store.take(w, 5, T0 + 0.2, None)).granted == 2
    view = store.view(w, T0 + 0.2, None)[0]
    assert view.room == 0 and view.limit == 10 and view.reset == pytest.approx(T0 + 10)


async def test_an_unknown_limit_is_learned_from_one_probe(store: Store) -> None:
    w = [spec(limit=None, trusted=False)]
    assert (await store.take(w, 4, T0, None)).granted == 1
    assert (await store.take(w, 1, T0, None)).waiting_on == w[0].key
    await store.settle(w, 1, reading(5, 4, T0 + 10), T0 + 0.1, None)
    assert (await store.take(w, 9, T0 + 0.2, None)).granted == 4


async def test_a_429_names_when_room_comes_back(store: Store) -> None:
    w = [spec(limit=5)]
    await store.take(w, 1, T0, None)
    back = await store.settle(w, 1, Answer(429, [(5, 0, int(T0 + 30))]), T0 + 0.1, None)
    assert back == pytest.approx(T0 + 30)
    assert (await store.take(w, 1, T0 + 1, None)).wake_at == pytest.approx(T0 + 30)


async def test_retry_after_parks_a_window_with_room(store: Store) -> None:
    w = [spec(limit=5)]
    await store.take(w, 1, T0, None)
    back = await store.settle(w, 1, Answer(429, [], retry_after=7.0), T0 + 1, None)
    assert back == pytest.approx(T0 + 8)
    assert (await store.take(w, 1, T0 + 2, None)).wake_at == pytest.approx(T0 + 8)


async def test_a_refund_leaves_no_trace(store: Store) -> None:
    w = [spec(limit=2)]
    assert (await store.take(w, 2, T0, None)).granted == 2
    await store.refund(w, 2, T0, None)
    assert (await store.take(w, 2, T0, None)).granted == 2


async def test_no_answer_frees_the_slot_but_still_counts(store: Store) -> None:
    w = [spec(limit=2)]
    assert (await store.take(w, 2, T0, None)).granted == 2
    await store.settle(w, 1, None, T0 + 0.1, None)  # the send may have reached X
    assert (await store.take(w, 1, T0 + 0.2, None)).granted == 0


async def test_every_window_must_have_room(store: Store) -> None:
    w = [spec(limit=5), spec(limit=2, seconds=86_400.0, key="u/create_tweet/user-24h")]
    assert (await store.take(w, 5, T0, None)).granted == 2
    for _ in range(2):
        await store.settle(w, 2, Answer(201, []), T0 + 0.1, None)
    parked = await store.take(w, 1, T0 + 1, None)
    assert parked.wake_at == pytest.approx(T0 + 1 + 86_400)


async def test_a_documented_app_cap_x_does_not_report_is_dropped(store: Store) -> None:
    app = [spec(limit=1, seconds=86_400.0, key="app/create_tweet/0", guess=True)]
    assert (await store.take(app, 1, T0, None)).granted == 1
    await store.settle(app, 1, Answer(201, []), T0 + 0.1, None)
    assert (await store.take(app, 100, T0 + 0.2, None)).granted == 100


async def test_times_are_kept_on_xs_clock(store: Store) -> None:
    """With X 100 s ahead, a reset X reports comes back on the caller's clock."""
    w = [spec(limit=1)]
    await store.take(w, 1, T0, (100.0, 100.5))
    await store.settle(w, 1, reading(1, 0, T0 + 110), T0 + 0.1, (100.0, 100.5))
    assert (await store.take(w, 1, T0 + 1, (100.0, 100.5))).wake_at == pytest.approx(T0 + 10)


async def test_redis_keys_expire_after_their_window(redis_server: RedisServer, redis_prefix: str) -> None:
    from redis.asyncio import Redis

    store = RedisStore(redis_server.url, prefix=redis_prefix)
    try:
        await store.take([spec(limit=3, seconds=10.0)], 1, T0, None)
    finally:
        await store.aclose()
    redis = Redis.from_url(redis_server.url)
    try:
        keys = await redis.keys(f"{redis_prefix}:*")
        assert len(keys) == 1
        ttl = await redis.pttl(keys[0])
        assert 0 < ttl <= (10 + 60) * 1000
    finally:
        await redis.aclose()


async def test_redis_unreachable_raises_store_unavailable() -> None:
    from tests.redis_server import free_port

    store = RedisStore(f"redis://:hunter2@127.0.0.1:{free_port()}/0", timeout=0.5)
    try:
        with pytest.raises(asyncx.StoreUnavailable) as info:
            await store.take([spec()], 1, T0, None)
        assert "hunter2" not in str(info.value) and "hunter2" not in repr(store)
    finally:
        await store.aclose()


async def test_fallback_counts_locally_against_a_share(caplog: pytest.LogCaptureFixture) -> None:
    from tests.redis_server import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5, fallback_share=0.5)
    try:
        taken = await store.take([spec(limit=10)], 10, T0, None)
        assert taken.granted == 5  # half of the limit, counted in this process
        assert "counting locally" in caplog.text
        await store.settle([spec(limit=10)], 1, Answer(201, []), T0, None, taken.ticket)
    finally:
        await store.aclose()


async def test_an_ended_window_is_seen_as_the_memory_store_sees_it(store: Store) -> None:
    """The max_wait estimate of a window with no known limit whose reset has passed: no bound, as while
    it was first being learned (not one probe and a whole window's wait)."""
    w = [spec(limit=None)]
    assert (await store.take(w, 1, T0, None)).granted == 1
    await store.settle(w, 1, reading(0, 0, T0 + 10), T0 + 0.1, None)  # X shows no limit, only a reset
    assert (await store.take(w, 1, T0 + 0.2, None)).granted == 0  # seen: parked until T0 + 10
    assert store.view(w, T0 + 11, None)[0].room >= 1 << 30


async def test_a_dead_grant_holds_a_reopened_window_for_the_probe_ttl_only(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """A process took a grant and died before its answer; the window resets. Its grant stands for the
    reopened window's probe, which the others wait on: for 5 s, not the whole flight TTL."""
    store = RedisStore(redis_server.url, prefix=redis_prefix, redis_time=False)
    store.configure(flight_ttl=45.0)
    w = [spec(limit=3, seconds=10.0)]
    try:
        assert (await store.take(w, 2, T0, None)).granted == 2  # one of them is the dead process's
        await store.settle(w, 1, reading(3, 1, T0 + 10), T0 + 0.1, None)
        blocked = await store.take(w, 1, T0 + 10.5, None)  # reopened: waits on the dead grant's answer
        assert blocked.granted == 0 and blocked.waiting_on == w[0].key
        assert (await store.take(w, 1, T0 + 15, None)).granted == 0
        assert (await store.take(w, 1, T0 + 16.5, None)).granted == 1  # 5 s on, not 45
    finally:
        await store.aclose()
