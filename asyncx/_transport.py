"""The bottom layer: one method that sends a ready, signed request and returns the raw response.

``AiohttpTransport`` is the real one; ``MockTransport(handler)`` lets tests answer requests with a
function instead of a server. aiohttp's exceptions become ``TransportError`` here and nowhere else.

It cannot be turned against its user:

- a body is read up to ``max_body`` bytes, counted after decompression over the whole body (aiohttp's
  own limit is per chunk, so a gzip bomb streamed in small chunks would otherwise inflate whole);
- aiohttp's silent second send of an idempotent request over a dropped keep-alive connection is refused,
  so every request on the wire is one the client decided, budgeted and signed (a replayed OAuth 1.0a
  nonce earns a 401);
- no exception it raises holds aiohttp's, whose ``request_info`` carries the ``Authorization`` header;
- TLS is verified with a context it makes (or one given that verifies), whatever a given session's
  connector says; ``ca_bundle`` adds a private CA, and ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` are honoured;
- proxies: one per request (a user's), one for the transport, else ``HTTPS_PROXY`` / ``HTTP_PROXY`` /
  ``NO_PROXY`` from the environment, resolved once per host rather than on every request.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ipaddress
import json
import re
import ssl as _ssl
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import attrs
from multidict import CIMultiDict, CIMultiDictProxy

from ._errors import (
    ClientClosed,
    FieldError,
    MalformedResponse,
    TransportError,
    UsageError,
    ValidationError,
    XError,
)
from ._validation import check_seconds, raise_if

__all__ = [
    "DEFAULT_MAX_BODY",
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


#: ``scheme://user:password@`` anywhere in a text: what a proxy URL's secret looks like in a message.
_USERINFO = re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^\s'\"]*@")


def _scrub(text: str, *urls: str | None) -> str:
    """``text`` with every URL's user and password replaced (aiohttp names the proxy URL in its errors):
    those of ``urls`` literally, whatever characters they hold, then anything shaped like one."""
    for url in urls:
        if url and "@" in url:
            userinfo = url.partition("://")[2].rpartition("@")[0]
            if userinfo:
                text = text.replace(userinfo, "<hidden>")
    return _USERINFO.sub(r"\1<hidden>@", text)


def _hide_userinfo(url: str | None) -> str:
    """A proxy URL for a repr or a message: its user and password (secrets) hidden, whatever else is
    wrong with it (a password with an unescaped ``/`` or ``#`` makes the rest of it look like a path)."""
    if url is None:
        return "None"
    return repr(_scrub(url, url))


@attrs.frozen
class WireRequest:
    """A request as it goes on the wire. ``form`` repeats a form body's fields for OAuth 1.0a signing;
    ``proxy`` is the HTTP proxy this request goes through (a user's own), if any.

    Its repr hides the ``Authorization`` header, the form (a token refresh carries secrets there) and a
    proxy's password.
    """

    method: str
    url: str
    headers: Mapping[str, str] = attrs.field(repr=_redacted)
    body: bytes | None = attrs.field(
        default=None, repr=lambda body: f"<{len(body)} bytes>" if body else "None"
    )
    form: tuple[tuple[str, str], ...] = attrs.field(default=(), repr=lambda form: f"<{len(form)} fields>")
    proxy: str | None = attrs.field(default=None, repr=_hide_userinfo)


@attrs.frozen
class Response:
    """A raw response: status, case-insensitive headers and body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON, or None when it is empty or not JSON (a proxy's HTML page, say, or
        JSON nested too deep to decode)."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            return None


@attrs.frozen
class Timeouts:
    """Seconds allowed to connect, and for one attempt of a request (connect, send and answer).

    ``total`` bounds one attempt: a call that retries can take several. The client's ``deadline``
    bounds a whole call, every attempt and wait included.
    """

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


#: The largest response body read by default: X's answers are kilobytes; a few MB is room to spare.
DEFAULT_MAX_BODY = 4 * 1024 * 1024

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class _Resent(Exception):
    """aiohttp was about to send a request a second time (see ``_send_once``)."""


def _send_once() -> Any:
    """A client middleware that lets its request through once. aiohttp silently sends an idempotent
    request again when a kept-alive connection turns out to be closed; for a signed request that replays
    the OAuth 1.0a nonce (X answers 401) and is a request no budget counted. The second pass is refused,
    and the retry layer above decides, with a fresh signature and budget."""
    passes = 0

    async def once(request: Any, handler: Any) -> Any:
        nonlocal passes
        passes += 1
        if passes > 1:
            raise _Resent
        return await handler(request)

    return once


@functools.cache
def _verified_context(ca_bundle: str | None = None) -> _ssl.SSLContext:
    """The default verifying context (which honours ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``), or one that
    trusts ``ca_bundle`` too; made once per process, since loading certificates takes milliseconds."""
    context = _ssl.create_default_context()
    if ca_bundle is not None:
        context.load_verify_locations(cafile=ca_bundle)
    return context


def check_ssl(ssl: object, ca_bundle: object) -> _ssl.SSLContext | None:
    """The SSL context to verify X with (None: the default), refusing one that does not verify."""
    errors: list[FieldError] = []
    if ssl is not None and ssl is not True:
        if not isinstance(ssl, _ssl.SSLContext):
            errors.append(FieldError("ssl", f"must be an ssl.SSLContext, got {type(ssl).__name__}"))
        elif ssl.verify_mode != _ssl.CERT_REQUIRED or not ssl.check_hostname:
            errors.append(
                FieldError(
                    "ssl",
                    "must verify certificates and host names: asyncx never turns TLS verification off "
                    "(trust a private CA with ca_bundle= instead)",
                )
            )
    if ca_bundle is not None:
        if not isinstance(ca_bundle, (str, Path)):
            errors.append(FieldError("ca_bundle", f"must be a path, got {type(ca_bundle).__name__}"))
        elif not Path(ca_bundle).is_file():
            errors.append(FieldError("ca_bundle", f"no such file: {str(ca_bundle)!r}"))
        elif isinstance(ssl, _ssl.SSLContext):
            errors.append(FieldError("ca_bundle", "give ssl= or ca_bundle=, not both"))
    raise_if(errors)
    if isinstance(ssl, _ssl.SSLContext):
        return ssl
    if ca_bundle is not None:
        try:
            return _verified_context(str(Path(ca_bundle).resolve()))  # type: ignore[arg-type]
        except (_ssl.SSLError, OSError) as exc:
            why = f"not a PEM certificate bundle ({exc.__class__.__name__})"
        raise ValidationError(why, field="ca_bundle")
    return None


def check_proxy(proxy: object, field: str = "proxy") -> str | None:
    """A proxy URL: ``http://`` or ``https://`` with a host (user and password allowed), or None."""
    if proxy is None:
        return None
    if not isinstance(proxy, str):
        raise ValidationError(f"must be a URL string, got {type(proxy).__name__}", field=field)
    parts = urlsplit(proxy)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or port == -1
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValidationError(
            f"must be an http:// or https:// proxy URL (host, optional port; percent-encode a '/', '#' "
            f"or '@' in its user or password), got {_hide_userinfo(proxy)}",
            field=field,
        )
    return proxy


def _refuse_unverified(session: aiohttp.ClientSession) -> None:
    """A given session whose connector does not verify TLS is refused, not silently overruled."""
    connector_ssl = getattr(session.connector, "_ssl", True)
    if connector_ssl is False or (
        isinstance(connector_ssl, _ssl.SSLContext) and connector_ssl.verify_mode != _ssl.CERT_REQUIRED
    ):
        raise ValidationError(
            "its connector does not verify TLS certificates; asyncx never sends credentials over "
            "unverified TLS (trust a private CA with ca_bundle= instead)",
            field="session",
        )


class _TooLarge(Exception):
    """A body grew past ``max_body``."""


class _Undecodable(Exception):
    """A body in an encoding that is not asked for, or that does not decompress."""


#: What the transport asks for and decompresses itself (never brotli or zstd, whose decoders are extras).
_ASKED = {"Accept-Encoding": "gzip, deflate"}


class _Inflater:
    """Decompresses a body piece by piece, each piece's output bounded, so that no network read can
    inflate past the cap: a 4 KiB piece of zeros would otherwise become 4 MB, a 64 KiB read 64 MB."""

    __slots__ = ("_cap", "_out", "_zlib")

    def __init__(self, encoding: str, cap: int) -> None:
        self._cap, self._out = cap, 0
        if encoding in ("identity", ""):
            self._zlib = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self._zlib = zlib.decompressobj(47)  # a gzip or a zlib header, told apart by zlib
        else:
            raise _Undecodable(f"Content-Encoding {encoding[:40]!r} was not asked for")

    def _take(self, data: bytes) -> bytes:
        self._out += len(data)
        if self._out > self._cap:
            raise _TooLarge
        return data

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        if self._zlib is None:
            yield self._take(chunk)
            return
        data = chunk
        try:
            while data:
                yield self._take(self._zlib.decompress(data, self._cap + 1 - self._out))
                data = self._zlib.unconsumed_tail
        except zlib.error as exc:
            raise _Undecodable(str(exc)[:100]) from None

    def finish(self) -> Iterator[bytes]:
        if self._zlib is not None:
            try:
                yield self._take(self._zlib.flush())
            except zlib.error as exc:
                raise _Undecodable(str(exc)[:100]) from None


class AiohttpTransport:
    """Sends requests over an aiohttp session: the caller's, or one it opens and owns.

    TLS certificates are always verified: with ``ssl`` (an ``SSLContext`` that verifies, trusting a test
    CA, say), with ``ca_bundle`` (a PEM file of extra CAs: a corporate proxy's), or with the system's
    CAs (``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` are honoured). A context or a given session that does not
    verify is refused. ``max_connections`` caps open connections across all hosts. Redirects are never
    followed: a 3xx comes back as it is, so a post is never replayed to, or reported from, another host.

    ``proxy`` is an HTTP proxy for every request (a request's own ``proxy``, a user's, wins); without one,
    ``HTTPS_PROXY``, ``HTTP_PROXY`` and ``NO_PROXY`` are read from the environment unless ``trust_env``
    is false. A plain ``http://`` request (to a loopback host) never goes to a proxy that is not on
    loopback too: its credentials would cross the network in the clear.

    ``timeouts`` apply to every request (a given session keeps its own unless ``timeouts`` are given
    too): ``connect`` bounds opening a connection and ``total`` one attempt, counted once a connection
    is free (never the wait for a pooled connection, which ``max_in_flight`` bounds). ``max_body`` caps
    a response body in bytes, counted after decompression: past it the request fails
    (``MalformedResponse`` for a 2xx, whose request was accepted; ``TransportError`` otherwise).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        timeouts: Timeouts = _DEFAULT_TIMEOUTS,
        max_connections: int = 100,
        ssl: _ssl.SSLContext | bool | None = None,
        ca_bundle: str | Path | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        if session is not None:
            _refuse_unverified(session)
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
            raise ValidationError(f"must be a whole number of bytes >= 1, got {max_body!r}", field="max_body")
        self._session = session
        self._owns_session = session is None
        # ``total`` starts when aiohttp is asked, so the wait for a pooled connection must not happen
        # inside it: ``_slots`` admits no more requests than the pool has connections. (aiohttp's per-read
        # timeout would do the same, at a cost of a timer per chunk read.)
        self._timeout = aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.connect)
        #: What every request passes aiohttp beside its own: bodies are decompressed in _read_body,
        #: bounded; a given session keeps its own timeouts unless ``timeouts`` are given too.
        self._extra: dict[str, Any] = {"auto_decompress": False}
        if session is None or timeouts is not _DEFAULT_TIMEOUTS:
            self._extra["timeout"] = self._timeout
        self._slots = _Slots(max_connections) if session is None else None
        self._max_connections = max_connections
        # An explicit context on every request: aiohttp would otherwise fall back to the connector's.
        self._ssl: _ssl.SSLContext | None = check_ssl(ssl, ca_bundle)
        self._proxy = check_proxy(proxy)
        self._trust_env = bool(trust_env)
        self._env: Mapping[str, str] | None = None  # HTTPS_PROXY and the like, read on first use
        self._env_proxies: dict[tuple[str, str], str | None] = {}
        self._max_body = max_body
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosed("the transport is closed")
        connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._context())
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            skip_auto_headers=("User-Agent",),
            headers=_ASKED,
            cookie_jar=aiohttp.DummyCookieJar(),  # X's API sets none we need; keep no state per host
        )
        return self._session

    def _context(self) -> _ssl.SSLContext:
        if self._ssl is None:
            self._ssl = _verified_context()
        return self._ssl

    def _proxy_for(self, request: WireRequest) -> str | None:
        """The proxy ``request`` goes through: its own, the transport's, or the environment's for its host
        (looked up once per scheme and host: aiohttp's ``trust_env`` does it on every request, in a
        thread, and would also add ``.netrc`` passwords). Without any, it costs two lookups."""
        proxy = request.proxy or self._proxy
        if proxy is None:
            if not self._trust_env:
                return None
            if self._env is None:
                import urllib.request  # once: it costs milliseconds to import

                self._env = urllib.request.getproxies_environment()
            if not self._env:
                return None
            proxy = self._env_proxy(request.url, self._env)
            if proxy is None:
                return None
        if request.url.startswith("http:") and not _is_loopback(urlsplit(proxy).hostname or ""):
            raise TransportError(
                f"refused to send a plain http:// request through the proxy {_hide_userinfo(proxy)}: "
                "its credentials would cross the network in the clear",
                maybe_delivered=False,
                retryable=False,
            )
        return proxy

    def _env_proxy(self, url: str, found: Mapping[str, str]) -> str | None:
        """The environment's proxy for ``url``'s scheme, unless ``NO_PROXY`` names its host."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if key not in self._env_proxies:
            import urllib.request

            bypass = urllib.request.proxy_bypass_environment(  # type: ignore[attr-defined]
                parts.hostname or "", found
            )
            self._env_proxies[key] = None if bypass else found.get(parts.scheme)
        return self._env_proxies[key]

    async def send(self, request: WireRequest) -> Response:
        """Send ``request`` once and return the answer, whatever its status; raise ``TransportError``
        when no answer came (or ``MalformedResponse`` for a 2xx whose body is past ``max_body``)."""
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
        proxy = self._proxy_for(request)
        extra = self._extra
        if request.method in _IDEMPOTENT:  # only these would aiohttp send again
            extra = {**extra, "middlewares": (*getattr(session, "_middlewares", ()), _send_once())}
        slots = self._slots  # taken here, so that ``total`` never counts the wait for a connection
        if slots is not None and not slots.take():
            await slots.wait()
        failure: XError | None = None
        try:
            async with session.request(
                request.method,
                request.url,
                headers=request.headers if self._owns_session else {**request.headers, **_ASKED},
                data=body,
                allow_redirects=False,
                ssl=self._context(),
                proxy=proxy,
                **extra,
            ) as resp:
                return Response(resp.status, resp.headers, await self._read_body(resp))
        # Each branch keeps only words: aiohttp's exception (kept as __context__ by ``raise ... from
        # None``) holds request_info, whose headers carry the Authorization header.
        except _Resent:
            failure = TransportError(
                "the connection closed before the answer came (not sent again: a fresh attempt is the "
                "retry policy's to make)",
                maybe_delivered=True,
            )
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            # Another attempt meets the same certificate: this is final, and nothing was written.
            failure = TransportError(
                f"TLS failed: the server's certificate did not verify ({_words(exc, proxy)}); trust a "
                "private CA with ca_bundle= (asyncx post --ca-bundle) or SSL_CERT_FILE",
                maybe_delivered=False,
                retryable=False,
            )
        except aiohttp.ClientHttpProxyError as exc:  # the proxy answered CONNECT with an error
            refused = exc.status in (401, 403, 407)
            failure = TransportError(
                f"the proxy {_hide_userinfo(proxy)} refused the request ({exc.status})"
                + (": check its user and password" if exc.status == 407 else ""),
                maybe_delivered=False,
                retryable=not refused,  # the same credentials meet the same refusal
            )
        except aiohttp.ClientProxyConnectionError as exc:
            where = _hide_userinfo(proxy)
            failure = TransportError(
                f"could not connect to the proxy {where}: {_words(exc, proxy)}", maybe_delivered=False
            )
        except aiohttp.ClientConnectorError as exc:
            # Covers DNS and refused connections: nothing was written.
            failure = TransportError(f"could not connect: {_words(exc, proxy)}", maybe_delivered=False)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            connect = isinstance(exc, aiohttp.ConnectionTimeoutError)
            failure = TransportError("timed out waiting for X", maybe_delivered=not connect)
        except aiohttp.ClientResponseError as exc:  # a status line or headers aiohttp cannot parse
            failure = TransportError(
                f"X's answer could not be read: {_words(exc, proxy)}", maybe_delivered=True
            )
        except aiohttp.ClientError as exc:
            failure = TransportError(f"connection failed: {_words(exc, proxy)}", maybe_delivered=True)
        except RuntimeError as exc:  # aiohttp's "Session is closed", a loop mismatch and the like
            failure = UsageError(f"the aiohttp session cannot send: {_words(exc, proxy)}")
        finally:
            if slots is not None:
                slots.release()
        try:
            raise failure
        except XError as bare:
            # Python 3.10 can still give it the exception aiohttp handled deep inside (its
            # request_info holds the Authorization header) as __context__: cut it, and re-raise as is.
            bare.__context__ = None
            raise

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        """The body, decompressed here (aiohttp's own inflates a whole network read at once, however
        large it grows), never past ``max_body`` bytes on the wire or after decompression."""
        cap = self._max_body
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        length = resp.content_length
        if encoding == "identity" and length is not None and length <= cap:
            return await resp.read()  # its size is known and within bounds: one read
        parts: list[bytes] = []
        size = 0
        try:
            inflate = _Inflater(encoding, cap)
            async for chunk in resp.content.iter_any():
                size += len(chunk)
                if size > cap:
                    raise _TooLarge
                parts.extend(inflate.feed(chunk))
            parts.extend(inflate.finish())
        except _TooLarge:
            resp.close()  # the rest is never read: this connection is not reused
            what = f"a body over max_body ({cap} bytes, counted decompressed)"
            if 200 <= resp.status < 300:
                raise MalformedResponse(
                    resp.status, headers=resp.headers, message=f"{resp.status}: X answered with {what}"
                ) from None
            raise TransportError(
                f"{resp.status}: the answer had {what}", maybe_delivered=resp.status >= 500
            ) from None
        except _Undecodable as exc:
            resp.close()
            why = f"{resp.status}: X's answer could not be decompressed ({exc})"
            if 200 <= resp.status < 300:
                raise MalformedResponse(resp.status, headers=resp.headers, message=why) from None
            raise TransportError(why, maybe_delivered=resp.status >= 500) from None
        return b"".join(parts)

    async def aclose(self) -> None:
        """Close the session it opened (a session it was given stays open)."""
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None


def _words(exc: BaseException, proxy: str | None = None) -> str:
    """An exception's class and message, cut, with the proxy's and any URL's password hidden: all of it
    that a ``TransportError`` keeps."""
    return f"{exc.__class__.__name__}: {_scrub(str(exc), proxy)[:300]}"


Handler = Callable[[WireRequest], Awaitable[Response]]


class MockTransport:
    """A transport that answers each request with ``await handler(request)``: for tests."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def send(self, request: WireRequest) -> Response:
        """The handler's answer to ``request``; its headers are made case-insensitive, as a real
        response's are."""
        response = await self._handler(request)
        return attrs.evolve(response, headers=CIMultiDictProxy(CIMultiDict(response.headers)))

    async def aclose(self) -> None:
        """Nothing to close: the handler holds no connection."""
        return None
