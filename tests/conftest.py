"""Fixtures shared by the test modules."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

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
