"""The pytest plugin (entry point ``pytest11``): fixtures ``fake_x`` and ``x_client``.

Options for the server come from a ``@pytest.mark.fake_x(**kwargs)`` marker on the test. The fixtures
need pytest-asyncio; without it the plugin adds nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from .._client import Client
from ._server import FakeX


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fake_x(**kwargs): options for the fake_x fixture's FakeX server")


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the fixtures need it
    pass
else:

    @pytest_asyncio.fixture
    async def fake_x(request: pytest.FixtureRequest) -> AsyncIterator[FakeX]:
        """A running ``FakeX``; configure it with ``@pytest.mark.fake_x(limits=..., faults=...)``."""
        marker = request.node.get_closest_marker("fake_x")
        kwargs: dict[str, Any] = dict(marker.kwargs) if marker else {}
        async with FakeX(**kwargs) as fake:
            yield fake

    @pytest_asyncio.fixture
    async def x_client(fake_x: FakeX) -> AsyncIterator[Client]:
        """An ``asyncx.Client`` connected to ``fake_x``, closed after the test."""
        async with fake_x.client() as client:
            yield client
