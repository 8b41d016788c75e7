"""The bottom layer: one method that sends a ready, signed request and returns the raw response.

``AiohttpTransport`` is the real one; ``MockTransport(handler)`` lets tests answer requests with a
function instead of a server. aiohttp's exceptions become ``TransportError`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl as _ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import attrs
from multidict import CIMultiDict, CIMultiDictProxy

from ._errors import TransportError, ValidationError

__all__ = [
    "AiohttpTransport",
    "MockTransport",
    "Response",
    "Timeouts",
    "Transport",
    "WireRequest",
    "check_base_url",
]


@attrs.frozen
class WireRequest:
    """A request as it goes on the wire. ``form`` repeats a form body's fields for OAuth 1.0a signing."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None = None
    form: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Response:
    """A raw response: status, case-insensitive headers and body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON, or None when it is empty or not JSON (a proxy's HTML page, say)."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@attrs.frozen
class Timeouts:
    """Seconds allowed to connect and for a whole request (connect, send and answer)."""

    connect: float = 10.0
    total: float = 30.0


_DEFAULT_TIMEOUTS = Timeouts()


class Transport(Protocol):
    """Sends one request. Raises ``TransportError`` when no HTTP answer was received."""

    async def send(self, request: WireRequest) -> Response: ...

    async def aclose(self) -> None: ...


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str) -> str:
    """Refuse a base URL that would send credentials in the clear; returns it without a trailing slash."""
    parts = urlsplit(base_url)
    if parts.scheme == "https" and parts.hostname:
        return base_url.rstrip("/")
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return base_url.rstrip("/")
    raise ValidationError(
        f"must be https:// (plain http:// only to a loopback host), got {base_url!r}", field="base_url"
    )


class AiohttpTransport:
    """Sends requests over an aiohttp session: the caller's, or one it opens and owns.

    TLS certificates are verified unless ``ssl`` says otherwise (an ``SSLContext`` trusting a test
    CA, say). ``max_connections`` caps open connections across all hosts.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        timeouts: Timeouts = _DEFAULT_TIMEOUTS,
        max_connections: int = 100,
        ssl: _ssl.SSLContext | bool = True,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.connect)
        self._max_connections = max_connections
        self._ssl = ssl

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, skip_auto_headers=("User-Agent",)
        )
        return self._session

    async def send(self, request: WireRequest) -> Response:
        session = self._session or self._open()
        try:
            async with session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body,
                timeout=self._timeout,
                ssl=self._ssl,
            ) as resp:
                body = await resp.read()
                return Response(resp.status, resp.headers, body)
        except aiohttp.ClientConnectorError as exc:
            # Covers DNS, refused connections and TLS failures: nothing was written.
            raise TransportError(
                f"could not connect: {exc.__class__.__name__}: {exc}", maybe_sent=False
            ) from None
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            connect = isinstance(exc, getattr(aiohttp, "ConnectionTimeoutError", ()))
            raise TransportError("timed out waiting for X", maybe_sent=not connect) from None
        except aiohttp.ClientError as exc:
            raise TransportError(
                f"connection failed: {exc.__class__.__name__}: {exc}", maybe_sent=True
            ) from None

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None


Handler = Callable[[WireRequest], Awaitable[Response]]


class MockTransport:
    """A transport that answers each request with ``await handler(request)``: for tests."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def send(self, request: WireRequest) -> Response:
        response = await self._handler(request)
        return attrs.evolve(response, headers=CIMultiDictProxy(CIMultiDict(response.headers)))

    async def aclose(self) -> None:
        return None
