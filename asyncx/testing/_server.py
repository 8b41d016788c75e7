"""``FakeX``: an in-process X API server with X's semantics, for testing bots and jobs without X.

It serves the four endpoints asyncx calls over real loopback sockets, with fixed per-user windows
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
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import attrs
from aiohttp import web

from .. import _models
from .._auth import BearerUser, OAuth1User
from .._client import Client
from .._errors import ValidationError
from .._models import RateLimit
from . import _oauth
from ._tls import self_signed

__all__ = ["DEFAULT_LIMITS", "FakeUser", "FakeX", "Faults", "LogEntry", "Post", "ideal_makespan"]

#: Per-user windows the fake enforces unless told otherwise (X's documented defaults where published).
DEFAULT_LIMITS: Mapping[str, RateLimit] = {
    "create_tweet": RateLimit(100, 900.0),
    "bookmark": RateLimit(50, 900.0),
    "add_collection_entry": RateLimit(300, 900.0),
    "curate_collection": RateLimit(300, 900.0),
    "user_tweets": RateLimit(900, 900.0),
}

_PROBLEMS = "https://api.twitter.com/2/problems/"
_DUPLICATE = "You are not allowed to create a Tweet with duplicate content."
_V2 = frozenset({"create_tweet", "bookmark", "user_tweets"})


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

    def create(self, name: str | None = None) -> FakeUser:
        user_id = str(next(self._ids))
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
        return self._by_name.get(name)

    def __getitem__(self, name: str) -> FakeUser:
        return self._by_name[name]

    def __iter__(self) -> Iterator[FakeUser]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)


class _Window:
    __slots__ = ("count", "reset")

    def __init__(self, reset: int) -> None:
        self.reset = reset
        self.count = 0


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
        #: Successful refreshes at ``/2/oauth2/token``.
        self.refreshes = 0
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
        self._fail_next: list[int] = []  # statuses for the next requests, before any effect
        self._drop_next = 0
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        #: Where the fake keeps its users, tokens, posts, bookmarks and collections between runs.
        self.state = None if state is None else Path(state)
        if self.state is not None and self.state.is_file():
            self._load(self.state)

    # -- life cycle ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024**2)
        app.on_response_prepare.append(self._stamp_date)
        app.router.add_get("/2/openapi.json", self._openapi)
        app.router.add_post("/2/oauth2/token", self._token)
        app.router.add_post("/2/tweets", self._handler("create_tweet", self._create_tweet))
        app.router.add_post("/2/users/{id}/bookmarks", self._handler("bookmark", self._bookmark))
        app.router.add_get("/2/users/{id}/tweets", self._handler("user_tweets", self._user_tweets))
        add, curate = "/1.1/collections/entries/add.json", "/1.1/collections/entries/curate.json"
        app.router.add_post(add, self._handler("add_collection_entry", self._collection_add))
        app.router.add_post(curate, self._handler("curate_collection", self._collection_curate))
        return app

    async def _stamp_date(self, request: web.Request, response: web.StreamResponse) -> None:
        # Every answer, 404s included, carries the server's (possibly skewed) clock, as X's do.
        response.headers["Date"] = formatdate(self.now(), usegmt=True)

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"openapi": "3.0.0", "info": {"title": "FakeX", "version": "2"}, "paths": {}}
        )

    async def start(self) -> FakeX:
        if self._tls and self._ssl is None:
            self._ssl = self_signed()
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self._host, self._port, ssl_context=self._ssl[0] if self._ssl else None
        )
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"{'https' if self._tls else 'http'}://{self._host}:{port}"
        return self

    async def stop(self) -> None:
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
        return Client(base_url=self.base_url, **kwargs)

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
        newest = max((int(p) for p in self.posts), default=1_800_000_000_000_000_000 - 1)
        self._ids = itertools.count(newest + 1)

    def _register(self, user: FakeUser) -> None:
        self._oauth1[user.oauth1.access_token] = (user.oauth1.access_token_secret, user.user_id)
        self._bearer[user.bearer.access_token] = user.user_id
        assert user.bearer.refresh_token is not None
        self._refresh_tokens[user.bearer.refresh_token] = user.user_id

    def expire_token(self, user: FakeUser | BearerUser) -> None:
        """Expire a user's current OAuth 2.0 access token: it now gets 401 until refreshed."""
        bearer = user.bearer if isinstance(user, FakeUser) else user
        self._bearer.pop(bearer.access_token, None)

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(parse_qsl((await request.read()).decode(), keep_blank_values=True))
        user_id = self._refresh_tokens.pop(form.get("refresh_token", ""), None)
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
        access, refresh = secrets.token_urlsafe(30), secrets.token_urlsafe(30)
        self._bearer[access] = user_id
        self._refresh_tokens[refresh] = user_id
        self.refreshes += 1
        scope = "tweet.read tweet.write users.read bookmark.write offline.access"
        payload: dict[str, object] = {
            "token_type": "bearer",
            "expires_in": 7200,
            "access_token": access,
            "scope": scope,
            "refresh_token": refresh,
        }
        return web.json_response(payload)

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """Answer the next ``count`` API requests with ``status`` before any effect (deterministic faults)."""
        self._fail_next.extend([status] * count)

    def drop_next(self, count: int = 1) -> None:
        """Apply the next ``count`` successful API requests, then drop their connections unanswered."""
        self._drop_next += count

    def _handler(self, endpoint: str, effect: Callable[..., Any]) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, endpoint, effect)

        return handle

    async def _handle(
        self, request: web.Request, endpoint: str, effect: Callable[..., Any]
    ) -> web.StreamResponse:
        body = await request.read()
        faults = self.faults
        if faults.latency or faults.jitter:
            await asyncio.sleep(max(0.0, faults.latency + self._rng.uniform(-faults.jitter, faults.jitter)))
        arrived = self.now()
        v2 = endpoint in _V2
        fail = self._fail_next.pop(0) if self._fail_next else None
        if fail is None and faults.error_rate and self._rng.random() < faults.error_rate:
            fail = faults.error_status
        if fail is not None:
            self.log.append(LogEntry(arrived, endpoint, None, fail))
            return self._error(v2, fail, "Service Unavailable", "service-unavailable", 130, {})
        user_id, failure = self._authenticate(request, body, endpoint, arrived, v2)
        if failure is not None:
            self.log.append(LogEntry(arrived, endpoint, user_id, failure.status))
            return failure
        assert user_id is not None
        headers, exhausted = self._take(user_id, endpoint, arrived)
        if exhausted:
            self.log.append(LogEntry(arrived, endpoint, user_id, 429))
            return self._error(v2, 429, "Too Many Requests", "rate-limit-exceeded", 88, headers)
        status, payload, duplicate = effect(request, body, user_id)
        response = self._json(payload, status, headers)
        committed = status < 300
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
        kind: str,
        code: int,
        headers: Mapping[str, str],
        detail: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> web.Response:
        if v2:
            payload: dict[str, Any] = {
                "title": title,
                "detail": detail or title,
                "status": status,
                "type": f"{_PROBLEMS}{kind}" if kind else "about:blank",
            }
            if errors:
                payload["errors"] = errors
        else:
            payload = {"errors": [{"code": code, "message": detail or title}]}
        return self._json(payload, status, headers)

    def _authenticate(
        self, request: web.Request, body: bytes, endpoint: str, now: float, v2: bool
    ) -> tuple[str | None, web.Response | None]:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            user_id = self._bearer.get(header[7:])
            if user_id is None:
                return None, self._error(v2, 401, "Unauthorized", "", 89, {}, "Invalid or expired token.")
            if endpoint in ("add_collection_entry", "curate_collection"):
                return user_id, self._error(
                    v2, 403, "Forbidden", "", 220, {}, "Your credentials do not allow access."
                )
            return user_id, None
        fields = _oauth.parse_header(header)
        if fields is None:
            return None, self._error(v2, 401, "Unauthorized", "", 32, {}, "Could not authenticate you.")
        token = fields.get("oauth_token", "")
        known = self._oauth1.get(token)
        if known is None or fields.get("oauth_consumer_key") != self.consumer_key:
            return None, self._error(v2, 401, "Unauthorized", "", 32, {}, "Could not authenticate you.")
        token_secret, user_id = known
        if endpoint == "bookmark":
            return user_id, self._error(
                v2, 403, "Forbidden", "client-forbidden", 0, {}, "Bookmarks need OAuth 2.0 user context."
            )
        timestamp = fields.get("oauth_timestamp", "")
        if not timestamp.isdigit() or abs(int(timestamp) - now) > self.timestamp_tolerance:
            return user_id, self._error(
                v2,
                401,
                "Unauthorized",
                "",
                135,
                {},
                "Timestamp out of bounds.",
                [{"code": 135, "message": "Timestamp out of bounds."}],
            )
        params = [(k, v) for k, v in fields.items() if k != "oauth_signature"]
        params += parse_qsl(request.url.query_string, keep_blank_values=True)
        if request.content_type == "application/x-www-form-urlencoded":
            params += parse_qsl(body.decode(), keep_blank_values=True)
        url = f"{request.url.scheme}://{request.headers.get('Host', request.host)}{request.path}"
        expected = _oauth.signature(request.method, url, params, self.consumer_secret, token_secret)
        if not hmac.compare_digest(expected, fields.get("oauth_signature", "")):
            return user_id, self._error(v2, 401, "Unauthorized", "", 32, {}, "Could not authenticate you.")
        nonce_key = f"{token}:{fields.get('oauth_nonce', '')}"
        if nonce_key in self._nonces:
            return user_id, self._error(v2, 401, "Unauthorized", "", 32, {}, "Nonce already used.")
        self._nonces[nonce_key] = now
        while self._nonces and next(iter(self._nonces.values())) < now - 2 * self.timestamp_tolerance:
            self._nonces.popitem(last=False)
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

    def _invalid(self, message: str, field: str = "body") -> tuple[int, dict[str, Any], bool]:
        payload = {
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": f"{_PROBLEMS}invalid-request",
            "errors": [{"message": message, "parameters": {field: []}}],
        }
        return 400, payload, False

    def _commit_post(self, user_id: str, text: str | None, tweet: Any = None) -> Post:
        extra: dict[str, Any] = {}
        if tweet is not None:
            extra = {
                "poll_options": tweet.poll.options if tweet.poll else (),
                "media_ids": tweet.media.media_ids if tweet.media else (),
                "quote_tweet_id": tweet.quote_tweet_id,
                "in_reply_to_tweet_id": tweet.reply.in_reply_to_tweet_id if tweet.reply else None,
            }
        post = Post(str(next(self._ids)), text, user_id, self.now(), **extra)
        self.posts[post.id] = post
        if text is not None:
            self._texts[user_id].add(text)
        return post

    def _create_tweet(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                return self._invalid("body must be a JSON object")
            tweet = _models.CreateTweet(**data)
        except ValueError as exc:  # bad JSON, or a ValidationError
            field = exc.field if isinstance(exc, ValidationError) else "body"
            return self._invalid(str(exc), field)
        except TypeError as exc:
            return self._invalid(str(exc).split("() ", 1)[-1])
        if tweet.text is not None and tweet.text in self._texts[user_id]:
            payload = {"title": "Forbidden", "type": "about:blank", "status": 403, "detail": _DUPLICATE}
            return 403, payload, True
        for ref in (tweet.quote_tweet_id, tweet.reply.in_reply_to_tweet_id if tweet.reply else None):
            if ref is not None and ref not in self.posts:
                return self._invalid(
                    f"the post {ref} does not exist",
                    "quote_tweet_id" if ref == tweet.quote_tweet_id else "reply.in_reply_to_tweet_id",
                )
        post = self._commit_post(user_id, tweet.text, tweet)
        return (
            201,
            {"data": {"id": post.id, "text": post.text or "", "edit_history_tweet_ids": [post.id]}},
            False,
        )

    def _user_tweets(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        """``GET /2/users/:id/tweets``: a user's posts, newest first, as X shows them to any reader."""
        owner = request.match_info["id"]
        query = request.query
        try:
            count = int(query.get("max_results", "10"))
            start = query.get("start_time")
            since = float(datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()) if start else None
        except ValueError:
            return self._invalid("max_results and start_time must be a number and YYYY-MM-DDTHH:mm:ssZ")
        if not 5 <= count <= 100:
            return self._invalid("max_results must be between 5 and 100", "max_results")
        since_id = query.get("since_id")
        posts = [
            p
            for p in reversed(self.posts.values())
            if p.user_id == owner
            and (since is None or p.created_at >= since)
            and (since_id is None or int(p.id) > int(since_id))
        ][:count]
        expansions = set(query.get("expansions", "").split(","))
        data, polls = [], []
        for p in posts:
            item: dict[str, Any] = {
                "id": p.id,
                "text": p.text or "",
                "edit_history_tweet_ids": [p.id],
                "created_at": _iso(p.created_at),
            }
            attachments: dict[str, list[str]] = {}
            if p.poll_options:
                attachments["poll_ids"] = [f"9{p.id}"]
                polls.append(
                    {
                        "id": f"9{p.id}",
                        "options": [
                            {"position": i, "label": o, "votes": 0} for i, o in enumerate(p.poll_options, 1)
                        ],
                    }
                )
            if p.media_ids:
                attachments["media_keys"] = [f"3_{m}" for m in p.media_ids]
            if attachments:
                item["attachments"] = attachments
            refs = [("quoted", p.quote_tweet_id), ("replied_to", p.in_reply_to_tweet_id)]
            if any(ref for _, ref in refs):
                item["referenced_tweets"] = [{"type": kind, "id": ref} for kind, ref in refs if ref]
            data.append(item)
        payload: dict[str, Any] = {"meta": {"result_count": len(data)}}
        if data:
            payload["data"] = data
            payload["meta"].update(newest_id=data[0]["id"], oldest_id=data[-1]["id"])
        if polls and "attachments.poll_ids" in expansions:
            payload["includes"] = {"polls": polls}
        return 200, payload, False

    def _bookmark(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        if request.match_info["id"] != user_id:
            payload = {
                "title": "Forbidden",
                "type": f"{_PROBLEMS}client-forbidden",
                "status": 403,
                "detail": "You can only bookmark posts for the user of the token.",
            }
            return 403, payload, False
        try:
            tweet_id = _models.Bookmark(json.loads(body)["tweet_id"]).tweet_id
        except (ValueError, KeyError, TypeError) as exc:
            return self._invalid(f"tweet_id: {exc}", "tweet_id")
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

    def _collection_add(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        try:
            add = _models.AddCollectionEntry(
                form.get("id", ""),
                form.get("tweet_id", ""),
                form.get("relative_to"),
                form.get("above", "true") != "false",
            )
        except ValidationError as exc:
            return 400, {"errors": [{"code": 44, "message": str(exc)}]}, False
        error = self._apply(add.id, "add", add.tweet_id, add.relative_to, add.above)
        return (
            200,
            {"objects": {}, "response": {"errors": [error] if error else []}},
            bool(error and error["reason"] == "duplicate"),
        )

    def _collection_curate(self, request: web.Request, body: bytes, user_id: str) -> tuple[int, Any, bool]:
        try:
            data = json.loads(body)
            curate = _models.CurateCollection(data["id"], data["changes"])
        except (ValueError, KeyError, TypeError) as exc:
            return 400, {"errors": [{"code": 44, "message": str(exc)}]}, False
        errors = [e for c in curate.changes if (e := self._apply(curate.id, c.op, c.tweet_id)) is not None]
        return (
            200,
            {"objects": {}, "response": {"errors": errors}},
            any(e["reason"] == "duplicate" for e in errors),
        )
