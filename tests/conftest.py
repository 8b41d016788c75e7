"""Fixtures shared by the test modules."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiohttp import web

import asyncx
from tests.redis_server import RedisClusterServers, RedisServer

pytest_plugins = ["pytester"]

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session; tests keep apart by key prefix."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """One local three-node Redis Cluster for the session."""
    cluster = RedisClusterServers()
    cluster.start()
    yield cluster
    cluster.close()


@pytest.fixture
def redis_prefix() -> str:
    return f"t{next(_prefixes)}"


@pytest.fixture(params=["node", "cluster"])
def make_store(request: pytest.FixtureRequest, redis_prefix: str) -> Callable[[], asyncx.RedisStore]:
    """Stores on one Redis node, or on a local three-node Redis Cluster."""
    if request.param == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        return lambda: asyncx.RedisStore(cluster.url, prefix=redis_prefix, cluster=True)
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda: asyncx.RedisStore(server.url, prefix=redis_prefix)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start loopback servers, each answering every request with a handler; gives each one's base URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.05)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()
