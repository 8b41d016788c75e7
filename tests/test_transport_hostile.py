"""The transport against servers that try to hurt their client, on loopback: a gzip bomb, an endless body,
a drip, JSON nested 100,000 deep, a kept-alive connection dropped under a signed GET, 10,000 headers,
self-signed TLS; and the ways out that must work: a private CA, proxies.

Each ends in a typed ``XError`` quickly, holds no more memory than the body cap, keeps every secret out
of the exception and its chain, sends no OAuth nonce twice, and leaves the client working.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import asyncx
from asyncx.testing import FakeX
from tests.test_bulk import _cli as run_cli

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN = "s3cr3t-bearer-token-value"
BOB = asyncx.BearerUser(access_token=TOKEN, user_id="42")
OK = {"data": {"id": "1", "text": "hi"}}


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and every one behind it (``__cause__`` and ``__context__``)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [item.__cause__, item.__context__]
    return seen


def assert_no_secret(exc: BaseException, *secrets: str) -> None:
    """No secret in the message, repr or attributes of the exception or anything chained to it."""
    for item in _chain(exc):
        text = f"{item!s} {item!r} {vars(item)!r} {getattr(item, 'request_info', '')!r}"
        for secret in (TOKEN, *secrets):
            assert secret not in text, (type(item), secret)


async def _next_call_works(client: asyncx.Client, url: str) -> None:
    """The same client's next call goes through (served by the ``ok`` route of the hostile server)."""
    post = await client.create_tweet(text="fine", user=BOB, max_wait=5)
    assert post.id == "1"


def _client(url: str, **kw: Any) -> asyncx.Client:
    return asyncx.Client(base_url=url, retry=None, **kw)


def _hostile(bad: Handler) -> Handler:
    """Answer a post with text "fine" normally, anything else with ``bad``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if b'"fine"' in body:
            return web.json_response(OK, status=201)
        return await bad(request)

    return handler


# -- bodies ---------------------------------------------------------------------------------------------


def _gzip_bomb(size: int) -> bytes:
    """``size`` zero bytes, gzip-compressed (about a thousandth of the size)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    piece = bytes(1 << 20)
    out = [packer.compress(piece) for _ in range(size >> 20)]
    return b"".join([*out, packer.flush()])


_BOMB = _gzip_bomb(64 << 20)


@pytest.mark.parametrize("status", [201, 500])
async def test_a_gzip_bomb_in_small_chunks_is_cut_at_the_body_cap(
    serve: Callable[[Handler], Awaitable[str]], status: int
) -> None:
    """64 MiB of zeros sent gzipped in 4 KiB chunks: the read stops at ``max_body`` decompressed bytes."""

    async def bomb(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=status, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )
        await response.prepare(request)
        for i in range(0, len(_BOMB), 4096):
            await response.write(_BOMB[i : i + 4096])
        return response

    url = await serve(_hostile(bomb))
    async with _client(url, max_body=1 << 20) as client:
        tracemalloc.start()
        try:
            with pytest.raises(asyncx.XError) as info:
                await client.create_tweet(text="boom", user=BOB)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        await _next_call_works(client, url)
    assert peak < 16 << 20, f"peak {peak >> 20} MiB for a 1 MiB cap"
    if status == 201:
        assert type(info.value) is asyncx.MalformedResponse and info.value.maybe_delivered is True
    else:
        assert type(info.value) is asyncx.TransportError
    assert "max_body" in str(info.value) and len(str(info.value)) <= 2000
    assert_no_secret(info.value)


async def test_an_endless_body_is_cut_at_the_body_cap(serve: Callable[[Handler], Awaitable[str]]) -> None:
    """A 200 that never ends: the read stops at the cap, quickly, and the post counts as delivered."""
    written = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal written
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk = b"[" + b"1," * 32767
        with pytest.raises((ConnectionError, RuntimeError, asyncio.CancelledError)):
            for _ in range(100_000):  # bounded: about 6 GB, far past any cap; the client hangs up first
                await response.write(chunk)
                written += len(chunk)
        return response

    url = await serve(_hostile(endless))
    loop = asyncio.get_running_loop()
    async with _client(url) as client:
        started = loop.time()
        with pytest.raises(asyncx.MalformedResponse) as info:
            await client.create_tweet(text="forever", user=BOB)
        assert loop.time() - started < 10
        await _next_call_works(client, url)
    assert info.value.maybe_delivered is True
    assert written < 64 << 20  # the client hung up near its 4 MiB default


async def test_a_huge_error_detail_is_cut_in_the_message(serve: Callable[[Handler], Awaitable[str]]) -> None:
    """A 3 MB problem ``detail`` (under the body cap) becomes a message of at most about 1,000 characters."""

    async def huge(request: web.Request) -> web.Response:
        return web.json_response({"title": "Forbidden", "detail": "x" * 3_000_000}, status=403)

    url = await serve(_hostile(huge))
    async with _client(url) as client:
        with pytest.raises(asyncx.Forbidden) as info:
            await client.create_tweet(text="big", user=BOB)
    assert len(str(info.value)) <= 2000
    assert info.value.problem is not None and len(info.value.problem.detail) <= 1100


@pytest.mark.parametrize(("status", "error"), [(201, asyncx.MalformedResponse), (400, asyncx.APIError)])
async def test_json_nested_100000_deep_is_a_typed_error(
    serve: Callable[[Handler], Awaitable[str]], status: int, error: type[asyncx.XError]
) -> None:
    """Never a bare ``RecursionError``: a 201 is delivered with its body unreadable, a 400 is refused."""

    async def deep(request: web.Request) -> web.Response:
        return web.Response(
            status=status, body=b"[" * 100_000 + b"]" * 100_000, content_type="application/json"
        )

    url = await serve(_hostile(deep))
    async with _client(url) as client:
        with pytest.raises(asyncx.XError) as info:
            await client.create_tweet(text="deep", user=BOB)
        await _next_call_works(client, url)
    assert type(info.value) is error
    assert info.value.maybe_delivered is (status == 201)


async def test_a_deeply_nested_token_refresh_answer_is_a_typed_error(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.path == "/2/oauth2/token":
            return web.Response(body=b"[" * 100_000 + b"]" * 100_000, content_type="application/json")
        return web.json_response({"title": "Unauthorized", "status": 401}, status=401)

    url = await serve(handler)
    carol = asyncx.BearerUser(
        "expired-token-value", "7", refresh_token="refresh-token-value", client_id="cid"
    )
    async with _client(url) as client:
        with pytest.raises(asyncx.XError) as info:
            await client.create_tweet(text="hi", user=carol)
    assert isinstance(info.value, asyncx.Unauthorized)
    assert_no_secret(info.value, "expired-token-value", "refresh-token-value")


@pytest.mark.parametrize(("status", "error"), [(201, asyncx.MalformedResponse), (500, asyncx.TransportError)])
async def test_an_encoding_not_asked_for_is_a_typed_error(
    serve: Callable[[Handler], Awaitable[str]], status: int, error: type[asyncx.XError]
) -> None:
    async def brotli(request: web.Request) -> web.Response:
        return web.Response(status=status, body=b"\x8b\x02\x80", headers={"Content-Encoding": "br"})

    url = await serve(_hostile(brotli))
    async with _client(url) as client:
        with pytest.raises(asyncx.XError) as info:
            await client.create_tweet(text="br", user=BOB)
        await _next_call_works(client, url)
    assert type(info.value) is error and "br" in str(info.value)


async def test_lone_surrogates_in_a_servers_text_leave_the_error_printable(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def odd(request: web.Request) -> web.Response:
        return web.Response(status=403, body=b'{"title": "Forbidden", "detail": "bad \\udc00 text"}')

    url = await serve(_hostile(odd))
    async with _client(url) as client:
        with pytest.raises(asyncx.Forbidden) as info:
            await client.create_tweet(text="odd", user=BOB)
    str(info.value).encode("utf-8")  # printable and loggable as UTF-8
    assert info.value.problem is not None and "bad ? text" in info.value.problem.detail


# -- headers, time ----------------------------------------------------------------------------------


async def test_ten_thousand_headers_are_a_transport_error_that_holds_no_token() -> None:
    """10,000 headers and one of 100 kB. aiohttp's ``ClientResponseError`` carries ``request_info`` with
    our Authorization header: it must not be reachable from what asyncx raises, through ``__context__``
    or ``__cause__``."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))
        writer.write(b"HTTP/1.1 201 Created\r\n" + many + b"X-Huge: " + b"h" * 100_000 + b"\r\n")
        writer.write(b"Content-Length: 2\r\n\r\n{}")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with _client(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(asyncx.TransportError) as info:
                await client.create_tweet(text="hi", user=BOB)
    finally:
        server.close()
        await server.wait_closed()
    assert info.value.maybe_delivered is True
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert_no_secret(info.value)


async def test_a_drip_is_ended_by_the_calls_deadline(serve: Callable[[Handler], Awaitable[str]]) -> None:
    """One byte a second: ``Timeouts.total`` bounds one attempt; ``deadline`` bounds the whole call."""

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=201, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for byte in b'{"data": {"id": "1", "text": "' + b"x" * 100:
            await response.write(bytes([byte]))
            await asyncio.sleep(0.25)
        return response

    url = await serve(_hostile(drip))
    loop = asyncio.get_running_loop()
    async with asyncx.Client(base_url=url, deadline=1.0) as client:  # the default retry policy, too
        started = loop.time()
        with pytest.raises(asyncx.DeadlineExceeded) as info:
            await client.create_tweet(text="slow", user=BOB)
        assert loop.time() - started < 1.5
        assert info.value.maybe_delivered is True  # the post was written: it may exist
        started = loop.time()
        with pytest.raises(asyncx.DeadlineExceeded):
            await client.create_tweet(text="slow again", user=BOB, deadline=0.3)
        assert loop.time() - started < 0.8
        await _next_call_works(client, url)


async def test_a_deadline_shorter_than_the_wait_for_budget_refuses_at_once() -> None:
    """With no budget for 15 minutes, a call with a 5 s deadline raises ``RateLimited`` at once."""
    async with FakeX(limits={"create_tweet": asyncx.RateLimit(1, 900.0)}) as fake:
        alice = fake.users.create()
        async with fake.client() as client:
            await client.create_tweet(text="one", user=alice.bearer)
            with pytest.raises(asyncx.RateLimited):
                await client.create_tweet(text="two", user=alice.bearer, deadline=5.0)
        assert len(fake.posts) == 1


# -- hidden re-sends ---------------------------------------------------------------------------------


async def test_a_dropped_keep_alive_connection_never_replays_a_signed_get() -> None:
    """The server answers a signed GET, keeps the connection, then drops it under the next GET unanswered.
    aiohttp would send that GET again by itself, with the same OAuth 1.0a nonce; asyncx must not."""
    nonces: list[str] = []
    requests = 0

    writers: list[asyncio.StreamWriter] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                requests += 1
                found = re.search(rb'oauth_nonce="([^"]+)"', head)
                if found:
                    nonces.append(found.group(1).decode())
                if requests == 2:  # the second request: hang up without a word
                    writer.close()
                    return
                body = b'{"data": [], "meta": {"result_count": 0}}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    alice = asyncx.OAuth1User("111-alice-token", "alice-token-secret")
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)

    try:
        client = asyncx.Client("ck", "consumer-secret", base_url=f"http://127.0.0.1:{port}", sleep=nap)
        async with client:
            assert await client.user_tweets("111", user=alice) == ()
            # The pooled connection dies under the second GET: the retry policy, not aiohttp, tries
            # again, with a fresh signature and its own budget.
            assert await client.user_tweets("111", user=alice) == ()
            assert client.rate_stats(alice).sent == 3
    finally:
        server.close()
        for writer in writers:  # a kept-alive connection's handler may still wait for a request
            writer.close()
        await server.wait_closed()
    assert requests == 3 and len(nonces) == 3
    assert len(set(nonces)) == 3, "an OAuth nonce went out twice"


# -- TLS ------------------------------------------------------------------------------------------


async def test_self_signed_tls_is_refused_saying_certificate_and_nothing_is_posted() -> None:
    async with FakeX(tls=True) as fake:
        alice = fake.users.create()
        async with asyncx.Client(base_url=fake.base_url) as client:
            with pytest.raises(asyncx.TransportError) as info:
                await client.create_tweet(text="hi", user=alice.bearer)
        assert not fake.posts and not fake.log
    assert "certificate" in str(info.value) and info.value.retryable is False
    assert_no_secret(info.value, alice.bearer.access_token)


async def test_a_private_ca_is_trusted_with_ca_bundle_or_ssl_cert_file(tmp_path: Path) -> None:
    async with FakeX(tls=True) as fake:
        alice = fake.users.create()
        assert fake.certificate is not None
        bundle = tmp_path / "ca.pem"
        bundle.write_text(fake.certificate)
        async with asyncx.Client(base_url=fake.base_url, ca_bundle=bundle) as client:
            await client.create_tweet(text="through a private CA", user=alice.bearer)
        assert len(fake.posts) == 1


async def _cli(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """``asyncx ...`` in a child process: its exit code, and what it printed on stdout and stderr."""
    code, out, err = await run_cli(*args, env=env)
    return code, out + err


async def test_the_command_behind_a_private_ca_ca_bundle_or_ssl_cert_file(tmp_path: Path) -> None:
    """Without the CA nothing is posted and the message says "certificate"; ``--ca-bundle`` or
    ``SSL_CERT_FILE`` (which Python's default context reads) make it work."""
    async with FakeX(tls=True) as fake:
        alice = fake.users.create("alice")
        assert fake.certificate is not None
        bundle = tmp_path / "ca.pem"
        bundle.write_text(fake.certificate)
        creds = _credentials(tmp_path, fake, alice)
        env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
        runs: dict[str, tuple[int, str]] = {}
        for name, extra, extra_env in (
            ("neither", [], {}),
            ("ca-bundle", ["--ca-bundle", bundle], {}),
            ("SSL_CERT_FILE", [], {"SSL_CERT_FILE": str(bundle)}),
        ):
            jobs = tmp_path / f"{name}.jsonl"
            jobs.write_text(f'{{"user": "alice", "text": "behind a private CA: {name}"}}\n')
            args = ("post", jobs, "--credentials", creds, "--base-url", fake.base_url, *extra)
            runs[name] = await _cli(*args, env={**env, **extra_env})
        texts = sorted(p.text or "" for p in fake.posts.values())
    code, out = runs["neither"]
    assert code != 0 and "certificate" in out, out
    assert runs["ca-bundle"][0] == 0, runs["ca-bundle"][1]
    assert runs["SSL_CERT_FILE"][0] == 0, runs["SSL_CERT_FILE"][1]
    assert texts == ["behind a private CA: SSL_CERT_FILE", "behind a private CA: ca-bundle"]


def _credentials(tmp_path: Path, fake: FakeX, user: Any, proxy: str | None = None) -> Path:
    path = tmp_path / "asyncx.toml"
    lines = [
        "[app]",
        f'consumer_key = "{fake.consumer_key}"',
        f'consumer_secret = "{fake.consumer_secret}"',
        "[users.alice]",
        f'access_token = "{user.oauth1.access_token}"',
        f'access_token_secret = "{user.oauth1.access_token_secret}"',
    ]
    if proxy is not None:
        lines.append(f'proxy = "{proxy}"')
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


async def test_a_context_or_session_that_does_not_verify_is_refused() -> None:
    lax = ssl.create_default_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    with pytest.raises(asyncx.ValidationError) as info:
        asyncx.Client(ssl=lax)
    assert info.value.field == "ssl"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session:
        with pytest.raises(asyncx.ValidationError) as refused:
            asyncx.Client(session=session)
    assert refused.value.field == "session" and "verify" in str(refused.value)
    with pytest.raises(asyncx.ValidationError) as missing:
        asyncx.Client(ca_bundle="/nonexistent/ca.pem")
    assert missing.value.field == "ca_bundle"


# -- proxies --------------------------------------------------------------------------------------


class Proxy:
    """A forward HTTP proxy on loopback: absolute-form requests and CONNECT tunnels, each counted."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, _, rest = head.partition(b"\r\n")
                method, target, version = line.split(b" ")
                self.requests.append(line)
                if method == b"CONNECT":
                    host, _, port = target.decode().rpartition(":")
                    up_reader, up_writer = await asyncio.open_connection(host, int(port))
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await writer.drain()
                    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
                    return
                url = aiohttp.client.URL(target.decode())
                length = (
                    int(re.search(rb"(?i)content-length: *(\d+)", rest).group(1)) if b"ength" in rest else 0
                )
                body = await reader.readexactly(length)
                up_reader, up_writer = await asyncio.open_connection(url.host, url.port)
                path = url.raw_path_qs.encode()
                up_writer.write(b"%s %s %s\r\n%s%s" % (method, path, version, rest, body))
                await up_writer.drain()
                status_head = await up_reader.readuntil(b"\r\n\r\n")
                found = re.search(rb"(?i)content-length: *(\d+)", status_head)
                answer = await up_reader.readexactly(int(found.group(1)) if found else 0)
                up_writer.close()
                writer.write(status_head + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    running = await Proxy().start()
    yield running
    await running.stop()


async def test_posts_go_through_client_proxy(proxy: Proxy) -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        async with fake.client(proxy=proxy.url) as client:
            for i in range(20):
                await client.create_tweet(text=f"via proxy {i}", user=alice.oauth1)
        assert len(fake.posts) == 20
    assert sum(line.startswith(b"POST http://127.0.0.1") for line in proxy.requests) == 20


async def test_http_proxy_from_the_environment_and_no_proxy(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with FakeX() as fake:
        alice = fake.users.create()
        async with fake.client() as client:
            for i in range(20):
                await client.create_tweet(text=f"env proxy {i}", user=alice.bearer)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with fake.client() as client:
            await client.create_tweet(text="not through the proxy", user=alice.bearer)
        async with fake.client(trust_env=False) as client:
            monkeypatch.delenv("NO_PROXY")
            await client.create_tweet(text="nor this", user=alice.bearer)
        assert len(fake.posts) == 22
    assert len(proxy.requests) == 20


async def test_a_users_own_proxy_wins_and_its_password_is_never_shown(proxy: Proxy) -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        with_password = proxy.url.replace("http://", "http://user:proxy-password@")
        user = asyncx.BearerUser(alice.bearer.access_token, alice.bearer.user_id, proxy=with_password)
        async with fake.client(proxy="http://127.0.0.1:9") as client:  # the client's: nothing listens
            await client.create_tweet(text="mine", user=user)
        wire = asyncx.WireRequest("GET", "https://x", {}, proxy=with_password)
        assert "proxy-password" not in repr(wire) and "proxy-password" not in repr(user)
    assert len(proxy.requests) == 1


async def test_the_command_posts_through_proxy_or_a_users_proxy(proxy: Proxy, tmp_path: Path) -> None:
    async with FakeX() as fake:
        alice = fake.users.create("alice")
        jobs = tmp_path / "jobs.jsonl"
        jobs.write_text("".join(f'{{"user": "alice", "text": "cli via proxy {i}"}}\n' for i in range(20)))
        creds = _credentials(tmp_path, fake, alice)
        code, out = await _cli(
            "post", jobs, "--credentials", creds, "--base-url", fake.base_url, "--proxy", proxy.url
        )
        assert code == 0, out
        jobs.write_text('{"user": "alice", "text": "the user\'s own proxy"}\n')
        creds = _credentials(tmp_path, fake, alice, proxy=proxy.url)
        code, out = await _cli("post", jobs, "--credentials", creds, "--base-url", fake.base_url)
        assert code == 0, out
        assert len(fake.posts) == 21
    assert sum(line.startswith(b"POST http://127.0.0.1") for line in proxy.requests) == 21


async def test_https_goes_through_a_proxy_tunnel(proxy: Proxy, tmp_path: Path) -> None:
    async with FakeX(tls=True) as fake:
        alice = fake.users.create()
        async with fake.client(proxy=proxy.url) as client:
            await client.create_tweet(text="tunnelled", user=alice.bearer)
        assert len(fake.posts) == 1
    assert proxy.requests and proxy.requests[0].startswith(b"CONNECT 127.0.0.1:")


async def test_a_proxy_that_refuses_its_credentials_is_final_and_keeps_the_password_hidden() -> None:
    """A corporate proxy answers CONNECT with 407: one attempt (the same password meets the same
    refusal), and the password is not in the message, though aiohttp's own names the proxy URL."""
    connects = 0

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connects
        await reader.readuntil(b"\r\n\r\n")
        connects += 1
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        proxy = f"http://alice:proxy-pa'ss\"word@127.0.0.1:{port}"  # quotes too
        async with asyncx.Client(base_url="https://127.0.0.1:9", proxy=proxy) as client:
            with pytest.raises(asyncx.TransportError) as info:
                await client.create_tweet(text="hi", user=BOB)
    finally:
        server.close()
        await server.wait_closed()
    assert connects == 1 and info.value.retryable is False and "407" in str(info.value)
    assert_no_secret(info.value, "proxy-pa", 'ss"word')


async def test_plain_http_never_goes_through_a_proxy_off_loopback() -> None:
    """A request to a loopback http:// URL through a proxy elsewhere would carry its token in the clear."""
    async with FakeX() as fake:
        alice = fake.users.create()
        async with fake.client(proxy="http://192.0.2.1:3128") as client:  # TEST-NET: never contacted
            with pytest.raises(asyncx.TransportError) as info:
                await client.create_tweet(text="hi", user=alice.bearer)
        assert not fake.posts
    assert info.value.retryable is False and "clear" in str(info.value)


def test_a_bad_proxy_url_is_a_validation_error_that_never_shows_the_password() -> None:
    for bad in (
        "socks5://127.0.0.1:1080",
        "127.0.0.1:3128",
        3128,
        "http://user:pw-secret@127.0.0.1:3128x",  # a port that is not one
        "http://user:pw-secret@127.0.0.1:99999",
        "http://user:pw/secret@127.0.0.1:3128",  # an unescaped '/' makes the rest look like a path
        "http://user:pw#secret@127.0.0.1:3128",
    ):
        with pytest.raises(asyncx.ValidationError) as info:
            asyncx.Client(proxy=bad)  # type: ignore[arg-type]
        assert info.value.field == "proxy"
        assert "secret" not in str(info.value), str(info.value)
    with pytest.raises(asyncx.ValidationError):
        asyncx.BearerUser("t", "1", proxy="ftp://x")
