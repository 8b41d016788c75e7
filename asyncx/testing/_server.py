"""``FakeX``: an in-process X API server with X's semantics, for testing bots and jobs without X.

It serves the endpoints asyncx calls (and the lookups other clients make first) over real loopback
sockets, with fixed per-user windows
anchored on the first request the server sees, ``x-rate-limit-*`` and 24-hour headers, a ``Date``
header from its own (possibly skewed) clock, OAuth 1.0a signature, timestamp and nonce checks, bearer
tokens bound to users, duplicate-content refusals, collections with a capacity, and seeded faults.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import math
import os
import random
import secrets
import ssl
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import attrs
from aiohttp import BodyPartReader, web

from .._auth import BearerUser, OAuth1User
from .._client import Client
from .._models import RateLimit
from . import _checks, _oauth
from ._tls import self_signed

__all__ = ["DEFAULT_LIMITS", "FakeMedia", "FakeUser", "FakeX", "Faults", "LogEntry", "Post", "ideal_makespan"]

#: Per-user windows the fake enforces unless told otherwise (X's documented defaults where published).
DEFAULT_LIMITS: Mapping[str, RateLimit] = {
    "create_tweet": RateLimit(100, 900.0),
    "delete_tweet": RateLimit(50, 900.0),
    "get_tweet": RateLimit(900, 900.0),
    "bookmark": RateLimit(50, 900.0),
    "delete_bookmark": RateLimit(50, 900.0),
    "bookmarks": RateLimit(180, 900.0),
    "add_collection_entry": RateLimit(300, 900.0),
    "curate_collection": RateLimit(300, 900.0),
    "user_tweets": RateLimit(900, 900.0),
    "users_me": RateLimit(75, 900.0),
    "get_user": RateLimit(900, 900.0),
    "get_user_by_username": RateLimit(900, 900.0),
    "verify_credentials": RateLimit(75, 900.0),
    "media_upload": RateLimit(500, 900.0),
    "media_initialize": RateLimit(1875, 900.0),
    "media_append": RateLimit(1875, 900.0),
    "media_finalize": RateLimit(1875, 900.0),
    "media_status": RateLimit(1000, 900.0),
    "media_metadata": RateLimit(500, 900.0),
}

_PROBLEMS = "https://api.twitter.com/2/problems/"
#: Where a multipart request's parsed form waits for its route: a typed request key from aiohttp 3.14 on
#: (a plain string key warns there), the string itself on older aiohttp, which has no RequestKey.
_FORM: Any = web.RequestKey("form", dict) if hasattr(web, "RequestKey") else "form"
_DUPLICATE = "You are not allowed to create a Tweet with duplicate content."
_REPLY_GONE = "You attempted to reply to a Tweet that is deleted or not visible to you."
_UNSUPPORTED = (
    "Authenticating with {used} is forbidden for this endpoint.  Supported authentication types are "
    "[OAuth 2.0 User Context]."
)
#: X's answer to a path it does not serve (v1.1 and v2 alike).
NOT_FOUND_BODY: Mapping[str, Any] = {"errors": [{"message": "Sorry, that page does not exist", "code": 34}]}
_OAUTH1, _OAUTH2 = "OAuth 1.0a User Context", "OAuth 2.0 User Context"
WRONG_LOOP = (
    "FakeX runs on another event loop than this call: its answers would never come. Give the test and "
    "the fixtures that start FakeX the same loop scope (pytest-asyncio: @pytest.mark.asyncio(loop_scope=...) "
    "on the test and loop_scope=... on the fixtures, or asyncio_default_fixture_loop_scope and "
    "asyncio_default_test_loop_scope in the pytest configuration; with anyio, start FakeX in an anyio "
    "fixture)."
)


@attrs.frozen
class _Route:
    """One endpoint the fake serves: its name (for limits and logs), method, path, which user contexts
    it takes, and whether it speaks v2 (problem bodies) or v1.1 (error codes)."""

    name: str
    method: str
    path: str
    auth: frozenset[str]
    v2: bool = True


_EITHER, _ONLY_OAUTH2, _ONLY_OAUTH1 = (
    frozenset({_OAUTH1, _OAUTH2}),
    frozenset({_OAUTH2}),
    frozenset({_OAUTH1}),
)
ROUTES = (
    _Route("create_tweet", "POST", "/2/tweets", _EITHER),
    _Route("get_tweet", "GET", "/2/tweets/{tweet_id}", _EITHER),
    _Route("delete_tweet", "DELETE", "/2/tweets/{tweet_id}", _EITHER),
    _Route("users_me", "GET", "/2/users/me", _EITHER),
    _Route("get_user_by_username", "GET", "/2/users/by/username/{username}", _EITHER),
    _Route("get_user", "GET", "/2/users/{id}", _EITHER),
    _Route("user_tweets", "GET", "/2/users/{id}/tweets", _EITHER),
    _Route("bookmark", "POST", "/2/users/{id}/bookmarks", _ONLY_OAUTH2),
    _Route("bookmarks", "GET", "/2/users/{id}/bookmarks", _ONLY_OAUTH2),
    _Route("delete_bookmark", "DELETE", "/2/users/{id}/bookmarks/{tweet_id}", _ONLY_OAUTH2),
    _Route("media_upload", "POST", "/2/media/upload", _EITHER),
    _Route("media_status", "GET", "/2/media/upload", _EITHER),
    _Route("media_initialize", "POST", "/2/media/upload/initialize", _EITHER),
    _Route("media_append", "POST", "/2/media/upload/{media_id}/append", _EITHER),
    _Route("media_finalize", "POST", "/2/media/upload/{media_id}/finalize", _EITHER),
    _Route("media_metadata", "POST", "/2/media/metadata", _EITHER),
    _Route("verify_credentials", "GET", "/1.1/account/verify_credentials.json", _ONLY_OAUTH1, v2=False),
    _Route("add_collection_entry", "POST", "/1.1/collections/entries/add.json", _ONLY_OAUTH1, v2=False),
    _Route("curate_collection", "POST", "/1.1/collections/entries/curate.json", _ONLY_OAUTH1, v2=False),
)


@web.middleware
async def _json_errors(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    """Paths the fake does not serve answer as X's do: JSON, never aiohttp's plain text."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPMethodNotAllowed as exc:
        body = {
            "title": "Method Not Allowed",
            "detail": "Method Not Allowed",
            "type": "about:blank",
            "status": 405,
        }
        return web.json_response(body, status=405, headers={"Allow": exc.headers.get("Allow", "")})
    except web.HTTPNotFound:
        return web.json_response(NOT_FOUND_BODY, status=404)


@attrs.frozen
class Faults:
    """Seeded fault injection. Rates are probabilities per request.

    ``error_rate``: answer ``error_status`` before any effect. ``drop_rate``: apply the request, then
    drop the connection so the answer is lost. ``latency`` and ``jitter``: seconds of delay before
    handling (uniform in ``latency ± jitter``).
    """

    error_rate: float = 0.0
    error_status: int = 503
    drop_rate: float = 0.0
    latency: float = 0.0
    jitter: float = 0.0


@attrs.frozen
class Post:
    """A post the fake holds."""

    id: str
    text: str | None
    user_id: str
    created_at: float
    #: What a text-less post holds, as ``GET /2/users/:id/tweets`` shows it.
    poll_options: tuple[str, ...] = ()
    media_ids: tuple[str, ...] = ()
    quote_tweet_id: str | None = None
    in_reply_to_tweet_id: str | None = None


@attrs.frozen
class LogEntry:
    """One request as the fake saw it: when it arrived (server clock), for whom, and how it ended."""

    at: float
    endpoint: str
    user_id: str | None
    status: int
    dropped: bool = False
    duplicate: bool = False


@attrs.frozen(repr=False)
class FakeUser:
    """A test user with both kinds of credentials: ``oauth1`` (with the fake's app keys) and ``bearer``."""

    name: str
    user_id: str
    oauth1: OAuth1User
    bearer: BearerUser

    def __repr__(self) -> str:
        return f"FakeUser(name={self.name!r}, user_id={self.user_id!r})"


class _Users:
    """``fake.users``: create test users and look them up by name."""

    def __init__(self, fake: FakeX) -> None:
        self._fake = fake
        self._by_name: dict[str, FakeUser] = {}
        self._ids = itertools.count(1000)

    def create(self, name: str | None = None, *, user_id: str | None = None) -> FakeUser:
        """A new user with working credentials; ``user_id`` picks its id (X's are 19 digits long)."""
        if user_id is None:
            user_id = str(next(self._ids))
        elif not user_id.isdigit() or any(u.user_id == user_id for u in self._by_name.values()):
            raise ValueError(f"user_id must be a new numeric id, got {user_id!r}")
        name = name or f"user{user_id}"
        if name in self._by_name:
            raise ValueError(f"a user named {name!r} exists")
        oauth1 = OAuth1User(
            access_token=f"{user_id}-{secrets.token_urlsafe(18)}",
            access_token_secret=secrets.token_urlsafe(30),
        )
        bearer = BearerUser(
            access_token=secrets.token_urlsafe(30),
            user_id=user_id,
            refresh_token=secrets.token_urlsafe(30),
            client_id=self._fake.client_id,
        )
        user = FakeUser(name, user_id, oauth1, bearer)
        self._by_name[name] = user
        self._fake._register(user)
        return user

    def add(self, user: FakeUser) -> None:
        """Take a user back, as a saved state holds it."""
        self._by_name[user.name] = user
        self._ids = itertools.count(max(int(user.user_id) + 1, next(self._ids)))

    def get(self, name: str) -> FakeUser | None:
        """The user called ``name``, or None (``fake.users[name]`` raises ``KeyError`` instead)."""
        return self._by_name.get(name)

    def __getitem__(self, name: str) -> FakeUser:
        return self._by_name[name]

    def __iter__(self) -> Iterator[FakeUser]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)


@attrs.define
class FakeMedia:
    """Media the fake holds: whose it is, what it is, how much of it came, and where processing is.

    ``state`` is ``uploading`` until finalized, then ``processing`` (video and GIF) and ``succeeded`` or
    ``failed``; one-shot images are ``succeeded`` at once. Times are on the server's clock.
    """

    owner: str
    media_type: str
    category: str
    total_bytes: int
    expires_at: float
    state: str = "uploading"
    segments: dict[int, int] = attrs.Factory(dict)
    ready_at: float = 0.0
    fails: bool = False
    alt_text: str | None = None

    def status(self, now: float) -> str:
        """The state at ``now`` (server clock): processing ends ``succeeded``, or ``failed`` for media
        ``FakeX.fail_processing`` marked, once ``ready_at`` has come."""
        if self.state == "processing" and now >= self.ready_at:
            self.state = "failed" if self.fails else "succeeded"
        return self.state


class _Window:
    __slots__ = ("count", "reset")

    def __init__(self, reset: int) -> None:
        self.reset = reset
        self.count = 0


async def _read_form(request: web.Request) -> dict[str, bytes | str]:
    """A multipart body's parts, in memory: file parts as bytes, the others as text. (aiohttp's own
    ``post()`` spools files to temporary files, and leaves them open when the client goes away.)"""
    form: dict[str, bytes | str] = {}
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        data = await part.read()
        form[part.name] = bytes(data) if part.filename else data.decode("utf-8", "replace")
    return form


def _file_bytes(field: Any) -> bytes:
    """The bytes of a multipart part: a file part, or a plain field's text."""
    if isinstance(field, bytes):
        return field
    return field.encode() if isinstance(field, str) else b""


def _iso(epoch: float) -> str:
    """X's timestamp format: ``2026-11-30T04:05:06.000Z``."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def ideal_makespan(first_arrival: float, posts: int, limit: int, window: float) -> float:
    """Seconds from a user's first post to the start of the last window ``posts`` need at ``limit`` per
    ``window``: the least any client can take. Each window opens at the previous one's reset, which the
    fake (like X) anchors on the window's first request and reports as a whole second."""
    start = first_arrival
    for _ in range(math.ceil(posts / limit) - 1):
        start = math.ceil(start + window)
    return start - first_arrival


class FakeX:
    """A fake X API on a free loopback port: ``async with FakeX() as fake: client = fake.client()``.

    ``limits`` overrides per-user windows by endpoint name; ``user_daily_limit`` and
    ``app_daily_limit`` add X's 24-hour caps on posts. ``clock`` gives epoch seconds (a
    ``ManualClock`` for tests that must not sleep) and ``skew`` shifts the server's clock from it.
    ``faults`` injects errors, dropped connections and latency, drawn from ``random.Random(seed)``.
    ``token_lifetime`` is how long an OAuth 2.0 access token lives, from when it was issued (the users'
    first ones from when they were made), and what ``expires_in`` says; None (the default) keeps them
    until ``expire_token``, while ``expires_in`` says X's 7200.
    """

    def __init__(
        self,
        *,
        limits: Mapping[str, RateLimit] | None = None,
        user_daily_limit: int | None = None,
        app_daily_limit: int | None = None,
        clock: Callable[[], float] = time.time,
        skew: float = 0.0,
        faults: Faults = Faults(),  # frozen, so sharing the default is safe
        seed: int = 0,
        tls: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        collection_capacity: int = 5000,
        timestamp_tolerance: float = 300.0,
        state: str | Path | None = None,
        media_processing: float = 2.0,
        token_lifetime: float | None = None,
    ) -> None:
        self.limits = {**DEFAULT_LIMITS, **(limits or {})}
        self.user_daily_limit = user_daily_limit
        self.app_daily_limit = app_daily_limit
        self.clock = clock
        self.skew = skew
        self.faults = faults
        self.collection_capacity = collection_capacity
        self.timestamp_tolerance = timestamp_tolerance
        self.consumer_key = secrets.token_urlsafe(18)
        self.consumer_secret = secrets.token_urlsafe(30)
        #: The OAuth 2.0 app's client id (a public client: no secret is needed to refresh).
        self.client_id = secrets.token_urlsafe(12)
        #: Successful refreshes at ``/2/oauth2/token``, and by user id.
        self.refreshes = 0
        self.refreshes_by_user: Counter[str] = Counter()
        self.users = _Users(self)
        self.log: list[LogEntry] = []
        self.posts: dict[str, Post] = {}
        self.bookmarks: defaultdict[str, set[str]] = defaultdict(set)
        self.collections: defaultdict[str, list[str]] = defaultdict(list)
        self._rng = random.Random(seed)
        self._host, self._port, self._tls = host, port, tls
        self._ssl: tuple[ssl.SSLContext, ssl.SSLContext, str] | None = None
        self._oauth1: dict[str, tuple[str, str]] = {}  # access token -> (secret, user id)
        self._bearer: dict[str, str] = {}  # access token -> user id
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> user id (single use)
        self._texts: defaultdict[str, set[str]] = defaultdict(set)
        self._nonces: OrderedDict[str, float] = OrderedDict()
        self._windows: dict[tuple[str, str], _Window] = {}
        self._ids = itertools.count(1_800_000_000_000_000_000)
        #: Media by id: uploaded, being uploaded, or registered with ``add_media``.
        self.media: dict[str, FakeMedia] = {}
        #: Seconds (server clock) a video or GIF takes to process after it is finalized.
        self.media_processing = media_processing
        self.token_lifetime = token_lifetime
        #: Refresh attempts with a refresh token that had been used already (X refuses them).
        self.refresh_reuses = 0
        self._expiries: dict[str, float] = {}  # access token -> when it expires (server clock)
        self._spent: set[str] = set()  # refresh tokens used once
        #: Bytes of media received (one-shot uploads and appended segments), resent ones included.
        self.media_bytes = 0
        self._fail_processing = 0
        self._media_ids = itertools.count(1_900_000_000_000_000_000)
        #: [endpoint or None, requests to let through first, status]: the next requests that fail
        self._fail_next: list[list[Any]] = []
        self._drop_next = 0
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.base_url = ""
        #: Where the fake keeps its users, tokens, posts, bookmarks and collections between runs.
        self.state = None if state is None else Path(state)
        if self.state is not None and self.state.is_file():
            self._load(self.state)

    # -- life cycle ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application that serves the fake, for mounting in a server of your own
        (``start`` serves it on a loopback port)."""
        app = web.Application(client_max_size=_checks.MAX_SEGMENT + 64 * 1024, middlewares=[_json_errors])
        app.on_response_prepare.append(self._stamp_date)
        app.router.add_get("/2/openapi.json", self._openapi)
        app.router.add_post("/2/oauth2/token", self._token)
        for route in ROUTES:
            app.router.add_route(route.method, route.path, self._handler(route))
        return app

    async def _stamp_date(self, request: web.Request, response: web.StreamResponse) -> None:
        # Every answer, 404s included, carries the server's (possibly skewed) clock, as X's do.
        response.headers["Date"] = formatdate(self.now(), usegmt=True)

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"openapi": "3.0.0", "info": {"title": "FakeX", "version": "2"}, "paths": {}}
        )

    async def start(self) -> FakeX:
        """Serve on the host and port given (a free port by default) and set ``base_url``; ``async with``
        calls it. With ``tls=True``, a throw-away certificate is made first."""
        if self._tls and self._ssl is None:
            self._ssl = self_signed()
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self._host, self._port, ssl_context=self._ssl[0] if self._ssl else None
        )
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        host = f"[{self._host}]" if ":" in self._host else self._host  # an IPv6 literal goes in brackets
        self.base_url = f"{'https' if self._tls else 'http'}://{host}:{port}"
        self._loop = asyncio.get_running_loop()
        return self

    async def stop(self) -> None:
        """Stop serving, and write the state to ``state`` if one was given."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.save()

    async def __aenter__(self) -> FakeX:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def certificate(self) -> str | None:
        """The PEM of the fake's self-signed certificate (``tls=True`` only), for clients elsewhere."""
        return self._ssl[2] if self._ssl else None

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """A client SSL context that trusts the fake's certificate (``tls=True`` only)."""
        return self._ssl[1] if self._ssl else None

    def client(self, **kwargs: Any) -> Client:
        """An ``asyncx.Client`` for this server with the fake app's keys; ``kwargs`` go to the client."""
        kwargs.setdefault("consumer_key", self.consumer_key)
        kwargs.setdefault("consumer_secret", self.consumer_secret)
        kwargs.setdefault("read_lag", 0.0)  # the fake's reads show its writes at once
        if self.ssl_context is not None:
            kwargs.setdefault("ssl", self.ssl_context)
        client = Client(base_url=self.base_url, **kwargs)
        if self._loop is not None:
            # The fake answers only while its own loop runs: a call from any other would wait for
            # answers that never come, so the client refuses it at once, saying why.
            client._bind_loop(self._loop, WRONG_LOOP)
        return client

    # -- inspection ------------------------------------------------------------------------------

    def now(self) -> float:
        """The server's clock: the fake's clock plus ``skew``."""
        return self.clock() + self.skew

    def posts_by(self, user: FakeUser | str) -> list[Post]:
        """The posts of a user (a ``FakeUser`` or a user id), oldest first."""
        user_id = user.user_id if isinstance(user, FakeUser) else user
        return [p for p in self.posts.values() if p.user_id == user_id]

    def count(
        self, status: int | None = None, endpoint: str | None = None, *, dropped: bool | None = None
    ) -> int:
        """How many logged requests match the given status, endpoint and dropped flag."""
        return sum(
            1
            for e in self.log
            if (status is None or e.status == status)
            and (endpoint is None or e.endpoint == endpoint)
            and (dropped is None or e.dropped == dropped)
        )

    def add_post(self, text: str, user: FakeUser) -> Post:
        """Put a post on the server directly, as if made elsewhere."""
        return self._commit_post(user.user_id, text)

    # -- plumbing --------------------------------------------------------------------------------

    def save(self) -> None:
        """Write the fake's state to ``state`` (replaced atomically, owner-only: it holds tokens)."""
        if self.state is None:
            return
        users = [
            {
                "name": u.name,
                "user_id": u.user_id,
                "oauth1": [u.oauth1.access_token, u.oauth1.access_token_secret],
                "bearer": u.bearer.access_token,
                "refresh_token": u.bearer.refresh_token,
            }
            for u in self.users
        ]
        data = {
            "app": [self.consumer_key, self.consumer_secret, self.client_id],
            "users": users,
            "bearer": self._bearer,
            "refresh_tokens": self._refresh_tokens,
            "posts": [attrs.asdict(p) for p in self.posts.values()],
            "bookmarks": {k: sorted(v) for k, v in self.bookmarks.items()},
            "collections": dict(self.collections),
            "media": {k: attrs.asdict(m) for k, m in self.media.items()},
        }
        partial = self.state.with_name(self.state.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(partial, self.state)

    def _load(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        self.consumer_key, self.consumer_secret, self.client_id = data["app"]
        for u in data["users"]:
            oauth1 = OAuth1User(*u["oauth1"])
            bearer = BearerUser(
                access_token=u["bearer"],
                user_id=u["user_id"],
                refresh_token=u["refresh_token"],
                client_id=self.client_id,
            )
            self.users.add(FakeUser(u["name"], u["user_id"], oauth1, bearer))
            self._oauth1[oauth1.access_token] = (oauth1.access_token_secret, u["user_id"])
        self._bearer = dict(data["bearer"])
        self._refresh_tokens = dict(data["refresh_tokens"])
        for raw in data["posts"]:
            for name in ("poll_options", "media_ids"):
                raw[name] = tuple(raw[name])
            post = Post(**raw)
            self.posts[post.id] = post
            if post.text is not None:
                self._texts[post.user_id].add(post.text)
        for user_id, ids in data["bookmarks"].items():
            self.bookmarks[user_id].update(ids)
        self.collections.update(data["collections"])
        for media_id, raw in data.get("media", {}).items():
            raw["segments"] = {int(i): n for i, n in raw["segments"].items()}
            self.media[media_id] = FakeMedia(**raw)
        newest_media = max((int(m) for m in self.media), default=1_900_000_000_000_000_000 - 1)
        self._media_ids = itertools.count(newest_media + 1)
        newest = max((int(p) for p in self.posts), default=1_800_000_000_000_000_000 - 1)
        self._ids = itertools.count(newest + 1)

    def _register(self, user: FakeUser) -> None:
        self._oauth1[user.oauth1.access_token] = (user.oauth1.access_token_secret, user.user_id)
        self._bearer[user.bearer.access_token] = user.user_id
        if self.token_lifetime is not None:
            self._expiries[user.bearer.access_token] = self.now() + self.token_lifetime
        assert user.bearer.refresh_token is not None
        self._refresh_tokens[user.bearer.refresh_token] = user.user_id

    def expire_token(self, user: FakeUser | BearerUser) -> None:
        """Expire a user's current OAuth 2.0 access token: it now gets 401 until refreshed."""
        bearer = user.bearer if isinstance(user, FakeUser) else user
        self._bearer.pop(bearer.access_token, None)
        self._expiries.pop(bearer.access_token, None)

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(parse_qsl((await request.read()).decode(), keep_blank_values=True))
        user_id = self._refresh_tokens.pop(form.get("refresh_token", ""), None)
        if user_id is None and form.get("refresh_token") in self._spent:
            self.refresh_reuses += 1
        if (
            form.get("grant_type") != "refresh_token"
            or form.get("client_id") != self.client_id
            or user_id is None
        ):
            refused = {
                "error": "invalid_request",
                "error_description": "Value passed for the token was invalid.",
            }
            return web.json_response(refused, status=400)
        self._spent.add(form["refresh_token"])
        access, refresh = secrets.token_urlsafe(30), secrets.token_urlsafe(30)
        self._bearer[access] = user_id
        if self.token_lifetime is not None:
            self._expiries[access] = self.now() + self.token_lifetime
        self._refresh_tokens[refresh] = user_id
        self.refreshes += 1
        self.refreshes_by_user[user_id] += 1
        scope = "tweet.read tweet.write users.read bookmark.write offline.access"
        payload: dict[str, object] = {
            "token_type": "bearer",
            "expires_in": 7200 if self.token_lifetime is None else max(1, round(self.token_lifetime)),
            "access_token": access,
            "scope": scope,
            "refresh_token": refresh,
        }
        return web.json_response(payload)

    def fail_next(
        self, count: int = 1, status: int = 503, *, endpoint: str | None = None, after: int = 0
    ) -> None:
        """Answer the next ``count`` API requests (to ``endpoint`` only, if given, and after letting
        ``after`` of them through) with ``status``, before any effect: deterministic faults."""
        self._fail_next.extend([endpoint, after if i == 0 else 0, status] for i in range(count))

    def drop_next(self, count: int = 1) -> None:
        """Apply the next ``count`` successful API requests, then drop their connections unanswered."""
        self._drop_next += count

    def _handler(self, route: _Route) -> Callable[[web.Request], Any]:
        effect = getattr(self, f"_{route.name}")

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, route, effect)

        return handle

    async def _handle(
        self, request: web.Request, route: _Route, effect: Callable[..., Any]
    ) -> web.StreamResponse:
        if request.content_type == "multipart/form-data":
            request[_FORM] = await _read_form(request)  # media segments: never part of a signature
            body = b""
        else:
            body = await request.read()
        faults = self.faults
        if faults.latency or faults.jitter:
            await asyncio.sleep(max(0.0, faults.latency + self._rng.uniform(-faults.jitter, faults.jitter)))
        arrived = self.now()
        endpoint, v2 = route.name, route.v2
        fail = None
        for rule in self._fail_next:
            if rule[0] is None or rule[0] == endpoint:
                if rule[1] > 0:
                    rule[1] -= 1
                else:
                    fail = rule[2]
                    self._fail_next.remove(rule)
                break
        if fail is None and faults.error_rate and self._rng.random() < faults.error_rate:
            fail = faults.error_status
        if fail is not None:
            self.log.append(LogEntry(arrived, endpoint, None, fail))
            return self._error(v2, fail, "Service Unavailable", 130, "Over capacity")
        user_id, failure = self._authenticate(request, body, route, arrived)
        if failure is not None:
            self.log.append(LogEntry(arrived, endpoint, user_id, failure.status))
            return failure
        assert user_id is not None
        headers, exhausted = self._take(user_id, endpoint, arrived)
        if exhausted:
            self.log.append(LogEntry(arrived, endpoint, user_id, 429))
            return self._error(v2, 429, "Too Many Requests", 88, "Rate limit exceeded", headers)
        status, payload, duplicate = effect(request, body, user_id)
        response = self._json(payload, status, headers)
        committed = status < 300 and request.method != "GET"
        dropped = committed and (
            self._drop_next > 0 or (faults.drop_rate > 0 and self._rng.random() < faults.drop_rate)
        )
        if dropped and self._drop_next > 0:
            self._drop_next -= 1
        if committed and self.state is not None:
            self.save()  # what the fake did survives a kill of the process holding it
        self.log.append(LogEntry(arrived, endpoint, user_id, status, dropped, duplicate))
        if dropped and request.transport is not None:
            request.transport.abort()
        return response

    def _json(self, payload: Any, status: int, headers: Mapping[str, str]) -> web.Response:
        return web.Response(
            body=json.dumps(payload).encode(),
            status=status,
            headers=headers,
            content_type="application/json",
        )

    def _error(
        self,
        v2: bool,
        status: int,
        title: str,
        code: int,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        """X's plain error: a v2 problem of type ``about:blank`` whose detail repeats its title, or a v1.1
        error list with ``code`` and ``message``."""
        if v2:
            payload: dict[str, Any] = {
                "title": title,
                "detail": title,
                "type": "about:blank",
                "status": status,
            }
        else:
            payload = {"errors": [{"message": message, "code": code}]}
        return self._json(payload, status, headers or {})

    def _problem(self, status: int, title: str, kind: str, detail: str, **extra: Any) -> web.Response:
        payload = {"title": title, "detail": detail, "type": f"{_PROBLEMS}{kind}", "status": status, **extra}
        return self._json(payload, status, {})

    def _authenticate(
        self, request: web.Request, body: bytes, route: _Route, now: float
    ) -> tuple[str | None, web.Response | None]:
        """The user a request speaks for, or X's refusal: who it is first, then whether this endpoint
        takes that kind of user context."""
        v2 = route.v2
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer":
            token = credentials.strip()
            user_id = self._bearer.get(token)
            if user_id is not None and self._expiries.get(token, math.inf) <= self.now():
                del self._bearer[token]  # expired: X answers as for any token it does not know
                user_id = None
            if user_id is None:
                return None, self._error(v2, 401, "Unauthorized", 89, "Invalid or expired token.")
            if _OAUTH2 not in route.auth:
                return user_id, self._error(
                    v2, 403, "Forbidden", 220, "Your credentials do not allow access to this resource."
                )
            return user_id, None
        fields = _oauth.parse_header(header)
        if fields is None:
            return None, self._error(v2, 401, "Unauthorized", 32, "Could not authenticate you.")
        token = fields.get("oauth_token", "")
        known = self._oauth1.get(token)
        if fields.get("oauth_consumer_key") != self.consumer_key:
            return None, self._error(v2, 401, "Unauthorized", 32, "Could not authenticate you.")
        if known is None:
            return None, self._error(v2, 401, "Unauthorized", 89, "Invalid or expired token.")
        token_secret, user_id = known
        timestamp = fields.get("oauth_timestamp", "")
        if not timestamp.isdigit() or abs(int(timestamp) - now) > self.timestamp_tolerance:
            return user_id, self._error(v2, 401, "Unauthorized", 135, "Timestamp out of bounds.")
        # RFC 5849 3.4.1.3.1: the header's fields but realm and the signature, the query, a form body.
        params = [(k, v) for k, v in fields.items() if k not in ("oauth_signature", "realm")]
        params += parse_qsl(request.url.raw_query_string, keep_blank_values=True)
        if request.content_type == "application/x-www-form-urlencoded":
            params += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        url = f"{request.url.scheme}://{request.headers.get('Host', request.host)}{request.url.raw_path}"
        expected = _oauth.signature(request.method, url, params, self.consumer_secret, token_secret)
        if not hmac.compare_digest(expected, fields.get("oauth_signature", "")):
            return user_id, self._error(v2, 401, "Unauthorized", 32, "Could not authenticate you.")
        nonce_key = f"{token}:{fields.get('oauth_nonce', '')}"
        if nonce_key in self._nonces:
            return user_id, self._error(v2, 401, "Unauthorized", 32, "Could not authenticate you.")
        self._nonces[nonce_key] = now
        while self._nonces and next(iter(self._nonces.values())) < now - 2 * self.timestamp_tolerance:
            self._nonces.popitem(last=False)
        if _OAUTH1 not in route.auth:
            return user_id, self._problem(
                403,
                "Unsupported Authentication",
                "unsupported-authentication",
                _UNSUPPORTED.format(used=_OAUTH1),
            )
        return user_id, None

    def _window(self, key: tuple[str, str], seconds: float, now: float) -> _Window:
        window = self._windows.get(key)
        if window is None or now >= window.reset:
            # A window starts when the server sees its first request, and ends on a whole second.
            window = self._windows[key] = _Window(math.ceil(now + seconds))
        return window

    def _take(self, user_id: str, endpoint: str, now: float) -> tuple[dict[str, str], bool]:
        limit = self.limits[endpoint]
        checks = [
            ("x-rate-limit", limit.requests, self._window((user_id, endpoint), limit.window_seconds, now))
        ]
        if endpoint == "create_tweet":
            if self.user_daily_limit is not None:
                checks.append(
                    (
                        "x-user-limit-24hour",
                        self.user_daily_limit,
                        self._window((user_id, "24h"), 86400.0, now),
                    )
                )
            if self.app_daily_limit is not None:
                checks.append(
                    ("x-app-limit-24hour", self.app_daily_limit, self._window(("app", "24h"), 86400.0, now))
                )
        exhausted = any(window.count >= allowed for _, allowed, window in checks)
        if not exhausted:
            for _, _, window in checks:
                window.count += 1
        headers = {}
        for prefix, allowed, window in checks:
            headers[f"{prefix}-limit"] = str(allowed)
            headers[f"{prefix}-remaining"] = str(max(0, allowed - window.count))
            headers[f"{prefix}-reset"] = str(window.reset)
        return headers, exhausted

    # -- effects: (status, payload, duplicate) ---------------------------------------------------

    def _invalid(
        self, message: str, parameter: str = "body", value: object = None
    ) -> tuple[int, dict[str, Any], bool]:
        """X's 400: an ``invalid-request`` problem naming the parameter and the value (or list of values)
        it refused."""
        values = value if isinstance(value, list) else [] if value is None else [value]
        payload = {
            "errors": [{"parameters": {parameter: values}, "message": message}],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": f"{_PROBLEMS}invalid-request",
        }
        return 400, payload, False

    def _forbidden(self, detail: str, duplicate: bool = False) -> tuple[int, dict[str, Any], bool]:
        return 403, {"detail": detail, "type": "about:blank", "title": "Forbidden", "status": 403}, duplicate

    def _missing(self, kind: str, parameter: str, value: str) -> dict[str, Any]:
        """X's entry in ``errors`` for a lookup that found nothing (the answer is still a 200)."""
        return {
            "value": value,
            "detail": f"Could not find {kind} with {parameter}: [{value}].",
            "title": "Not Found Error",
            "resource_type": kind,
            "parameter": parameter,
            "resource_id": value,
            "type": f"{_PROBLEMS}resource-not-found",
        }

    def _commit_post(self, user_id: str, text: str | None, fields: Mapping[str, Any] | None = None) -> Post:
        fields = fields or {}
        post = Post(
            str(next(self._ids)),
            text,
            user_id,
            self.now(),
            poll_options=tuple(fields.get("poll_options", ())),
            media_ids=tuple(fields.get("media_ids", ())),
            quote_tweet_id=fields.get("quote_tweet_id"),
            in_reply_to_tweet_id=fields.get("in_reply_to_tweet_id"),
        )
        self.posts[post.id] = post
        if text is not None:
            self._texts[user_id].add(text)
        return post

    def add_media(
        self, user: FakeUser | str, expires_in: float = 86400.0, media_type: str = "image/png"
    ) -> str:
        """Register a processed media id for a user, as if uploaded: posts may attach it until it expires."""
        user_id = user.user_id if isinstance(user, FakeUser) else user
        media_id = str(next(self._media_ids))
        videos = {"video/mp4": "tweet_video", "video/quicktime": "tweet_video"}
        category = {"image/gif": "tweet_gif", **videos}.get(media_type, "tweet_image")
        self.media[media_id] = FakeMedia(
            user_id, media_type, category, 1, self.now() + expires_in, "succeeded"
        )
        return media_id

    def fail_processing(self, count: int = 1) -> None:
        """The next ``count`` videos or GIFs finalized fail processing, as a corrupt file does on X."""
        self._fail_processing += count

    def _usable_media(self, user_id: str, media_id: str) -> bool:
        media = self.media.get(media_id)
        return (
            media is not None
            and media.owner == user_id
            and self.now() < media.expires_at
            and media.status(self.now()) == "succeeded"
        )

    def _mixes_media(self, media_ids: list[str]) -> bool:
        """X's rule: up to 4 images, or one GIF, or one video."""
        kinds = [self.media[m].category for m in media_ids]
        single = [k for k in kinds if k.endswith(("_gif", "_video"))]
        return bool(single) and len(kinds) > 1

    def _create_tweet(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        try:
            fields = _checks.check_create_tweet(json.loads(body))
        except ValueError:
            return self._invalid("Your request body is not valid JSON.")
        except _checks.Invalid as exc:
            return self._invalid(exc.message, exc.parameter, exc.value)
        text = fields.get("text")
        bad_media = [m for m in fields.get("media_ids", ()) if not self._usable_media(user_id, m)]
        if not bad_media and self._mixes_media(fields.get("media_ids", [])):
            bad_media = list(fields["media_ids"])
        if bad_media:
            return self._invalid("Your media IDs are invalid.", "media.media_ids", bad_media)
        if text and text in self._texts[user_id]:
            return self._forbidden(_DUPLICATE, duplicate=True)
        reply_to = fields.get("in_reply_to_tweet_id")
        if reply_to is not None and reply_to not in self.posts:
            return self._forbidden(_REPLY_GONE)
        quoted = fields.get("quote_tweet_id")
        if quoted is not None and quoted not in self.posts:
            return self._invalid(
                f"Could not find tweet with quote_tweet_id: [{quoted}].", "quote_tweet_id", quoted
            )
        post = self._commit_post(user_id, text, fields)
        return (
            201,
            {"data": {"id": post.id, "text": post.text or "", "edit_history_tweet_ids": [post.id]}},
            False,
        )

    def _tweet_json(self, p: Post, polls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": p.id,
            "text": p.text or "",
            "edit_history_tweet_ids": [p.id],
            "created_at": _iso(p.created_at),
            "author_id": p.user_id,
        }
        attachments: dict[str, list[str]] = {}
        if p.poll_options:
            attachments["poll_ids"] = [f"9{p.id}"]
            if polls is not None:
                options = [{"position": i, "label": o, "votes": 0} for i, o in enumerate(p.poll_options, 1)]
                polls.append({"id": f"9{p.id}", "options": options})
        if p.media_ids:
            attachments["media_keys"] = [f"3_{m}" for m in p.media_ids]
        if attachments:
            item["attachments"] = attachments
        refs = [("quoted", p.quote_tweet_id), ("replied_to", p.in_reply_to_tweet_id)]
        if any(ref for _, ref in refs):
            item["referenced_tweets"] = [{"type": kind, "id": ref} for kind, ref in refs if ref]
        return item

    def _get_tweet(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        tweet_id = request.match_info["tweet_id"]
        if _checks.ID.fullmatch(tweet_id) is None:
            return self._invalid(f"The `id` query parameter value [{tweet_id}] is not valid", "id", tweet_id)
        post = self.posts.get(tweet_id)
        if post is None:
            return 200, {"errors": [self._missing("tweet", "id", tweet_id)]}, False
        return 200, {"data": self._tweet_json(post)}, False

    def _delete_tweet(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        tweet_id = request.match_info["tweet_id"]
        post = self.posts.get(tweet_id)
        if post is None:
            return 200, {"data": {"deleted": False}}, False
        if post.user_id != user_id:
            return self._forbidden("You are not allowed to delete this Tweet.")
        del self.posts[tweet_id]
        if post.text is not None:
            self._texts[user_id].discard(post.text)
        return 200, {"data": {"deleted": True}}, False

    def _user_json(self, user: FakeUser) -> dict[str, Any]:
        return {"id": user.user_id, "name": user.name.title(), "username": user.name}

    def _user_by_id(self, user_id: str) -> FakeUser | None:
        return next((u for u in self.users if u.user_id == user_id), None)

    def _users_me(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        user = self._user_by_id(user_id)
        assert user is not None
        return 200, {"data": self._user_json(user)}, False

    def _get_user(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        wanted = request.match_info["id"]
        user = self._user_by_id(wanted)
        if user is None:
            return 200, {"errors": [self._missing("user", "id", wanted)]}, False
        return 200, {"data": self._user_json(user)}, False

    def _get_user_by_username(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        name = request.match_info["username"]
        user = next((u for u in self.users if u.name.lower() == name.lower()), None)
        if user is None:
            return 200, {"errors": [self._missing("user", "username", name)]}, False
        return 200, {"data": self._user_json(user)}, False

    def _verify_credentials(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        user = self._user_by_id(user_id)
        assert user is not None
        payload = {
            "id": int(user.user_id),
            "id_str": user.user_id,
            "name": user.name.title(),
            "screen_name": user.name,
        }
        return 200, payload, False

    def _user_tweets(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        """``GET /2/users/:id/tweets``: a user's posts, newest first, as X shows them to any reader."""
        owner = request.match_info["id"]
        query = request.query
        try:
            count = int(query.get("max_results", "10"))
        except ValueError:
            return self._invalid("The `max_results` query parameter value is not valid", "max_results")
        if not 5 <= count <= 100:
            return self._invalid(
                f"The `max_results` query parameter value [{count}] is not between 5 and 100", "max_results"
            )
        start = query.get("start_time")
        try:
            since = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() if start else None
        except ValueError:
            return self._invalid(
                f"Invalid date format for `start_time`: [{start}]. Use YYYY-MM-DDTHH:mm:ssZ", "start_time"
            )
        since_id = query.get("since_id")
        if since_id is not None and _checks.ID.fullmatch(since_id) is None:
            return self._invalid(
                f"The `since_id` query parameter value [{since_id}] is not valid", "since_id"
            )
        posts = [
            p
            for p in reversed(self.posts.values())
            if p.user_id == owner
            and (since is None or p.created_at >= since)
            and (since_id is None or int(p.id) > int(since_id))
        ][:count]
        expansions = set(query.get("expansions", "").split(","))
        polls: list[dict[str, Any]] = []
        data = [self._tweet_json(p, polls) for p in posts]
        payload: dict[str, Any] = {"meta": {"result_count": len(data)}}
        if data:
            payload["data"] = data
            payload["meta"].update(newest_id=data[0]["id"], oldest_id=data[-1]["id"])
        if polls and "attachments.poll_ids" in expansions:
            payload["includes"] = {"polls": polls}
        return 200, payload, False

    def _own(self, request: web.Request, user_id: str) -> tuple[int, Any, bool] | None:
        """X's refusal when ``:id`` in the path is not the token's own user."""
        if request.match_info["id"] == user_id:
            return None
        payload = {
            "title": "Forbidden",
            "type": f"{_PROBLEMS}client-forbidden",
            "status": 403,
            "detail": "You are not permitted to act on behalf of another user.",
        }
        return 403, payload, False

    def _bookmark(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        refused = self._own(request, user_id)
        if refused is not None:
            return refused
        try:
            data = json.loads(body)
            if not isinstance(data, dict) or "tweet_id" not in data:
                return self._invalid("$.tweet_id: is missing but it is required", "tweet_id")
            tweet_id = _checks.check_id("tweet_id", data["tweet_id"])
        except ValueError:
            return self._invalid("Your request body is not valid JSON.")
        except _checks.Invalid as exc:
            return self._invalid(exc.message, exc.parameter, exc.value)
        if tweet_id not in self.posts:
            payload = {
                "title": "Not Found Error",
                "type": f"{_PROBLEMS}resource-not-found",
                "status": 404,
                "detail": f"Could not find tweet with tweet_id: [{tweet_id}].",
            }
            return 404, payload, False
        self.bookmarks[user_id].add(tweet_id)
        return 200, {"data": {"bookmarked": True}}, False

    def _delete_bookmark(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        refused = self._own(request, user_id)
        if refused is not None:
            return refused
        self.bookmarks[user_id].discard(request.match_info["tweet_id"])
        return 200, {"data": {"bookmarked": False}}, False

    def _bookmarks(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        refused = self._own(request, user_id)
        if refused is not None:
            return refused
        posts = [
            self.posts[t] for t in sorted(self.bookmarks[user_id], key=int, reverse=True) if t in self.posts
        ]
        data = [self._tweet_json(p) for p in posts]
        payload: dict[str, Any] = {"meta": {"result_count": len(data)}}
        if data:
            payload["data"] = data
        return 200, payload, False

    def _apply(
        self, collection_id: str, op: str, tweet_id: str, relative_to: str | None = None, above: bool = True
    ) -> dict[str, Any] | None:
        entries = self.collections[collection_id]
        change = {"op": op, "tweet_id": tweet_id}
        if op == "remove":
            if tweet_id not in entries:
                return {"change": change, "reason": "not_found"}
            entries.remove(tweet_id)
            return None
        if tweet_id not in self.posts:
            return {"change": change, "reason": "not_found"}
        if tweet_id in entries:
            return {"change": change, "reason": "duplicate"}
        index = 0  # newest first
        if relative_to is not None and relative_to in entries:
            index = entries.index(relative_to) + (0 if above else 1)
        entries.insert(index, tweet_id)
        del entries[self.collection_capacity :]  # past capacity, the oldest go
        return None

    def _v1_invalid(self, message: str) -> tuple[int, Any, bool]:
        return 400, {"errors": [{"code": 44, "message": message}]}, False

    def _add_collection_entry(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        # X reads v1.1 parameters from the query string and a form body alike.
        form = dict(parse_qsl(request.url.raw_query_string, keep_blank_values=True))
        if request.content_type == "application/x-www-form-urlencoded":
            form.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        collection_id, tweet_id = form.get("id", ""), form.get("tweet_id", "")
        relative_to = form.get("relative_to")
        if _checks.COLLECTION_ID.fullmatch(collection_id) is None:
            return self._v1_invalid("id parameter is invalid.")
        if _checks.ID.fullmatch(tweet_id) is None:
            return self._v1_invalid("tweet_id parameter is invalid.")
        if relative_to is not None and _checks.ID.fullmatch(relative_to) is None:
            return self._v1_invalid("relative_to parameter is invalid.")
        error = self._apply(collection_id, "add", tweet_id, relative_to, form.get("above", "true") != "false")
        return (
            200,
            {"objects": {}, "response": {"errors": [error] if error else []}},
            bool(error and error["reason"] == "duplicate"),
        )

    def _curate_collection(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        try:
            data = json.loads(body)
        except ValueError:
            return self._v1_invalid("The request body is not valid JSON.")
        if not isinstance(data, dict) or _checks.COLLECTION_ID.fullmatch(str(data.get("id", ""))) is None:
            return self._v1_invalid("id parameter is invalid.")
        changes = data.get("changes")
        if not isinstance(changes, list) or not 1 <= len(changes) <= 100:
            return self._v1_invalid("changes must list 1 to 100 changes.")
        for change in changes:
            if (
                not isinstance(change, dict)
                or change.get("op") not in ("add", "remove")
                or _checks.ID.fullmatch(str(change.get("tweet_id", ""))) is None
            ):
                return self._v1_invalid("each change needs an op (add or remove) and a tweet_id.")
        errors = [e for c in changes if (e := self._apply(data["id"], c["op"], c["tweet_id"])) is not None]
        return (
            200,
            {"objects": {}, "response": {"errors": errors}},
            any(e["reason"] == "duplicate" for e in errors),
        )

    # -- media upload (v2) -----------------------------------------------------------------------

    def _media_json(self, media_id: str, media: FakeMedia) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": media_id,
            "media_key": f"{'7' if media.category.endswith('video') else '3'}_{media_id}",
            "expires_after_secs": max(0, int(media.expires_at - self.now())),
            "size": media.total_bytes,
        }
        now = self.now()
        state = media.status(now)
        if state == "processing":
            remaining = media.ready_at - now
            done = 1.0 - remaining / self.media_processing if self.media_processing else 1.0
            item["processing_info"] = {
                "state": "pending" if done < 0.25 else "in_progress",
                "check_after_secs": max(1, math.ceil(remaining)),
                "progress_percent": int(100 * max(0.0, done)),
            }
        elif state == "failed":
            error = {"code": 1, "name": "InvalidMedia", "message": "Unsupported video format"}
            item["processing_info"] = {"state": "failed", "error": error}
        elif media.ready_at:  # processed media says so once done; a one-shot image says nothing
            item["processing_info"] = {"state": "succeeded"}
        return {"data": item}

    def _own_media(self, media_id: str, user_id: str) -> FakeMedia | tuple[int, Any, bool]:
        media = self.media.get(media_id)
        if media is None or media.owner != user_id or self.now() >= media.expires_at:
            return self._invalid(f"The media id {media_id} is not valid.", "media_id", media_id)
        return media

    def _media_upload(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        form: Mapping[str, Any] = request.get(_FORM) or {}
        data = _file_bytes(form.get("media"))
        self.media_bytes += len(data)
        category = form.get("media_category", "tweet_image")
        media_type = form.get("media_type") or _checks.image_type(data)
        if not data:
            return self._invalid("$.media: is missing but it is required", "media")
        if category not in ("tweet_image", "dm_image", "subtitles"):
            return self._invalid(
                f"{category} media must be uploaded with initialize, append and finalize.", "media_category"
            )
        try:
            _checks.check_media(media_type, category, len(data))
        except _checks.Invalid as exc:
            return self._invalid(exc.message, exc.parameter)
        media_id = str(next(self._media_ids))
        media = FakeMedia(user_id, str(media_type), category, len(data), self.now() + 86400.0, "succeeded")
        self.media[media_id] = media
        return 200, self._media_json(media_id, media), False

    def _media_initialize(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise _checks.Invalid("body", "$: object expected")
            _checks.check_media(data.get("media_type"), data.get("media_category"), data.get("total_bytes"))
        except ValueError:
            return self._invalid("Your request body is not valid JSON.")
        except _checks.Invalid as exc:
            return self._invalid(exc.message, exc.parameter)
        media_id = str(next(self._media_ids))
        media = FakeMedia(
            user_id, data["media_type"], data["media_category"], data["total_bytes"], self.now() + 86400.0
        )
        self.media[media_id] = media
        return 200, self._media_json(media_id, media), False

    def _media_append(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        media_id = request.match_info["media_id"]
        media = self._own_media(media_id, user_id)
        if isinstance(media, tuple):
            return media
        if media.state != "uploading":
            return self._invalid("The media has been finalized.", "media_id", media_id)
        form: Mapping[str, Any] = request.get(_FORM) or {}
        index = form.get("segment_index", "")
        if not isinstance(index, str) or not index.isdigit() or not 0 <= int(index) <= 999:
            return self._invalid("$.segment_index: must be an integer from 0 to 999", "segment_index")
        size = len(_file_bytes(form.get("media")))
        self.media_bytes += size
        if size == 0:
            return self._invalid("$.media: is missing but it is required", "media")
        if size > _checks.MAX_SEGMENT:
            payload = {
                "title": "Payload Too Large",
                "detail": "Payload Too Large",
                "type": "about:blank",
                "status": 413,
            }
            return 413, payload, False
        media.segments[int(index)] = size  # the same index again replaces it: appends are idempotent
        return 200, {"data": {"expires_at": int(media.expires_at)}}, False

    def _media_finalize(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        media_id = request.match_info["media_id"]
        media = self._own_media(media_id, user_id)
        if isinstance(media, tuple):
            return media
        if media.state == "uploading":
            indexes = sorted(media.segments)
            if indexes != list(range(len(indexes))) or sum(media.segments.values()) != media.total_bytes:
                return self._invalid(
                    "Segments do not add up to provided total file size.", "media_id", media_id
                )
            if media.category.endswith(("_video", "_gif")):
                media.state, media.ready_at = "processing", self.now() + self.media_processing
                if self._fail_processing:
                    self._fail_processing -= 1
                    media.fails = True
            else:
                media.state = "succeeded"
        return 200, self._media_json(media_id, media), False

    def _media_status(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        if request.query.get("command") != "STATUS":
            return self._invalid("$.command: must be STATUS", "command")
        media = self._own_media(request.query.get("media_id", ""), user_id)
        if isinstance(media, tuple):
            return media
        return 200, self._media_json(request.query["media_id"], media), False

    def _media_metadata(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        try:
            data = json.loads(body)
            media_id = _checks.check_id("id", data.get("id") if isinstance(data, dict) else None)
            text = data.get("metadata", {}).get("alt_text", {}).get("text")
        except ValueError:
            return self._invalid("Your request body is not valid JSON.")
        except _checks.Invalid as exc:
            return self._invalid(exc.message, exc.parameter, exc.value)
        except AttributeError:
            return self._invalid("$.metadata.alt_text.text: is missing but it is required", "metadata")
        if not isinstance(text, str) or not 1 <= len(text) <= 1000:
            return self._invalid(
                "$.metadata.alt_text.text: must be 1 to 1000 characters", "metadata.alt_text.text"
            )
        media = self._own_media(media_id, user_id)
        if isinstance(media, tuple):
            return media
        media.alt_text = text
        return 200, {"data": {"id": media_id, "associated_metadata": True, "alt_text": {"text": text}}}, False
