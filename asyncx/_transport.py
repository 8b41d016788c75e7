"""The bottom layer: one method that sends a ready, signed request and returns the raw response.

``AiohttpTransport`` is the real one; ``MockTransport(handler)`` lets tests answer requests with a
function instead of a server. aiohttp's exceptions become ``TransportError`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import ssl as _ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import attrs
from multidict import CIMultiDict, CIMultiDictProxy

from ._errors import ClientClosed, FieldError, TransportError, UsageError, ValidationError
from ._validation import check_seconds, raise_if

__all__ = [
    "AiohttpTransport",
    "MockTransport",
    "Response",
    "Timeouts",
    "Transport",
    "WireRequest",
    "check_base_url",
]


def _redacted(headers: Mapping[str, str]) -> str:
    return repr({k: "<hidden>" if k.lower() == "authorization" else v for k, v in headers.items()})


@attrs.frozen
class WireRequest:
    """A request as it goes on the wire. ``form`` repeats a form body's fields for OAuth 1.0a signing.

    Its repr hides the ``Authorization`` header, and the form (a token refresh carries secrets there).
    """

    method: str
    url: str
    headers: Mapping[str, str] = attrs.field(repr=_redacted)
    body: bytes | None = attrs.field(
        default=None, repr=lambda body: f"<{len(body)} bytes>" if body else "None"
    )
    form: tuple[tuple[str, str], ...] = attrs.field(default=(), repr=lambda form: f"<{len(form)} fields>")


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

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        check_seconds(errors, "connect", self.connect)
        check_seconds(errors, "total", self.total)
        raise_if(errors)


_DEFAULT_TIMEOUTS = Timeouts()


class _Slots:
    """A semaphore whose free path is plain calls: ``take()``, else ``await wait()``; then ``release()``.
    (``asyncio.Semaphore`` makes two coroutines per use, which the collector then has to visit.)"""

    __slots__ = ("_free", "_waiters")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def take(self) -> bool:
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Wait for a slot that ``release`` hands over."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed a slot just as the wait was cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        self._free += 1


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
    if not isinstance(base_url, str):
        raise ValidationError(f"must be a string, got {type(base_url).__name__}", field="base_url")
    parts = urlsplit(base_url)
    if parts.scheme == "https" and parts.hostname:
        return base_url.rstrip("/")
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return base_url.rstrip("/")
    raise ValidationError(
        f"must be https:// (plain http:// only to a loopback host), got {base_url!r}", field="base_url"
    )


#: Bodies larger than this (media segments) go as a ``_LargeBody``.
_LARGE_BODY = 1024 * 1024


class _LargeBody(aiohttp.payload.Payload):
    """A body of bytes larger than aiohttp likes to be given as bytes (it warns, and a ``BytesIO`` makes it
    copy the body out again in 64 KiB pieces). The transport buffers a write of any size, so one write
    of the whole body costs least."""

    def __init__(self, value: bytes) -> None:
        super().__init__(value)
        self._size = len(value)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value).decode(encoding, errors)

    async def write(self, writer: Any) -> None:
        await writer.write(self._value)


class AiohttpTransport:
    """Sends requests over an aiohttp session: the caller's, or one it opens and owns.

    TLS certificates are verified unless ``ssl`` says otherwise (an ``SSLContext`` trusting a test
    CA, say). ``max_connections`` caps open connections across all hosts. Redirects are never followed:
    a 3xx comes back as it is, so a post is never replayed to, or reported from, another host.

    ``timeouts`` apply to the session it opens: ``connect`` bounds opening a connection and ``total``
    the whole request, counted once a connection is free (never the wait for a pooled connection,
    which ``max_in_flight`` bounds). A session the caller gives keeps its own timeouts and pool.
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
        # ``total`` starts when aiohttp is asked, so the wait for a pooled connection must not happen
        # inside it: ``_slots`` admits no more requests than the pool has connections. (aiohttp's per-read
        # timeout would do the same, at a cost of a timer per chunk read.)
        self._timeout = aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.connect)
        self._slots = _Slots(max_connections) if session is None else None
        self._max_connections = max_connections
        self._ssl = ssl
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosed("the transport is closed")
        connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, skip_auto_headers=("User-Agent",)
        )
        return self._session

    async def send(self, request: WireRequest) -> Response:
        session = self._session or self._open()
        if session.closed:
            raise (
                ClientClosed("the transport is closed")
                if self._closed
                else UsageError(
                    "the aiohttp session given to the client was closed while the client still uses it"
                )
            )
        raw = request.body
        # A media segment: one write of the whole body (see _LargeBody).
        body: bytes | _LargeBody | None = (
            _LargeBody(raw) if raw is not None and len(raw) > _LARGE_BODY else raw
        )
        slots = self._slots  # taken here, so that ``total`` never counts the wait for a connection
        if slots is not None and not slots.take():
            await slots.wait()
        try:
            async with session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=body,
                allow_redirects=False,
                ssl=self._ssl,
            ) as resp:
                body = await resp.read()
                return Response(resp.status, resp.headers, body)
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            # Another attempt meets the same certificate: this is final, and nothing was written.
            raise TransportError(
                f"TLS failed: {exc.__class__.__name__}: {exc}", maybe_delivered=False, retryable=False
            ) from None
        except aiohttp.ClientConnectorError as exc:
            # Covers DNS and refused connections: nothing was written.
            raise TransportError(
                f"could not connect: {exc.__class__.__name__}: {exc}", maybe_delivered=False
            ) from None
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            connect = isinstance(exc, aiohttp.ConnectionTimeoutError)
            raise TransportError("timed out waiting for X", maybe_delivered=not connect) from None
        except aiohttp.ClientError as exc:
            raise TransportError(
                f"connection failed: {exc.__class__.__name__}: {exc}", maybe_delivered=True
            ) from None
        except RuntimeError as exc:  # aiohttp's "Session is closed", a loop mismatch and the like
            raise UsageError(f"the aiohttp session cannot send: {exc}") from None
        finally:
            if slots is not None:
                slots.release()

    async def aclose(self) -> None:
        self._closed = True
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
