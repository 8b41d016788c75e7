"""The client: endpoint coroutines over one send path you can read top to bottom.

``send`` validates and prepares the request, then ``_send_retrying`` retries around
``_send_budgeted``, which holds a rate-limit permit around ``_send_single``: the only step that does I/O.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from ssl import SSLContext
from types import TracebackType
from typing import Any, TypeVar, overload

import aiohttp
import tenacity

from . import _retry
from ._auth import BearerUser, OAuth1Signer, OAuth1User, User
from ._endpoints import Endpoint, Prepared, endpoint_for
from ._errors import (
    AlreadyPosted,
    APIError,
    DuplicateContent,
    ServerError,
    TransportError,
    Unauthorized,
    ValidationError,
    error_from_response,
)
from ._headers import server_date
from ._models import (
    AddCollectionEntry,
    Bookmark,
    CollectionChange,
    CollectionResult,
    CreateTweet,
    CurateCollection,
    Geo,
    Media,
    Poll,
    RateLimit,
    Reply,
    Request,
    Tweet,
)
from ._oauth2 import OAuth2Refresher
from ._retry import RetryPolicy
from ._scheduler import BudgetStats, Permit, Scheduler
from ._store import Store
from ._transport import AiohttpTransport, Response, Timeouts, Transport, WireRequest, check_base_url

__all__ = ["DEFAULT_BASE_URL", "Client"]

log = logging.getLogger("asyncx")

DEFAULT_BASE_URL = "https://api.twitter.com"

T = TypeVar("T")

_NestedArg = Mapping[str, Any] | None
_DEFAULT_TIMEOUTS = Timeouts()
_DEFAULT_RETRY = RetryPolicy()

#: Set to ``[0]`` around a call to learn how many attempts it made (the bulk runner reports them).
ATTEMPTS: ContextVar[list[int] | None] = ContextVar("asyncx_attempts", default=None)

#: How often one call goes back to the queue after 429s that named a reset, before it gives up.
_MAX_REQUEUES = 5


class Client:
    """An X API client for many users at once. Use it as ``async with asyncx.Client(...) as client``.

    ``consumer_key`` and ``consumer_secret`` are the app's keys, needed for OAuth 1.0a users.
    ``session`` is an aiohttp session to use (never closed by the client); ``user`` a default user
    for every call; ``rate_limits`` overrides the default limits per endpoint name
    (``{"create_tweet": asyncx.RateLimit(100, 900.0)}``, a list for several windows, ``app:<name>`` for
    app-wide ones). ``ssl`` is an SSLContext to verify X's certificate with (a test CA, say);
    verification is never turned off.

    Calls wait for rate budget, in FIFO order per user and endpoint; ``max_wait`` (seconds, per call
    or for the client) makes a call that would wait longer raise ``RateLimited`` at once instead.
    ``max_in_flight`` bounds open requests. ``retry`` is the ``RetryPolicy`` for transient failures
    (``None``: one attempt). ``store`` holds the budgets' counts: in this process by default, or
    ``asyncx.RedisStore(url)`` to share them with other processes (the client closes it). ``clock`` and
    ``sleep`` exist for tests.

    Example::

        async with asyncx.Client(consumer_key=KEY, consumer_secret=SECRET) as client:
            alice = asyncx.OAuth1User(access_token=TOKEN, access_token_secret=TOKEN_SECRET)
            post = await client.create_tweet(text="hello", user=alice)
    """

    def __init__(
        self,
        consumer_key: str | None = None,
        consumer_secret: str | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        session: aiohttp.ClientSession | None = None,
        user: User | None = None,
        rate_limits: Mapping[str, RateLimit | Sequence[RateLimit]] | None = None,
        timeouts: Timeouts = _DEFAULT_TIMEOUTS,
        max_connections: int = 100,
        ssl: SSLContext | None = None,
        max_wait: float | None = None,
        max_in_flight: int = 256,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        store: Store | None = None,
    ) -> None:
        self.base_url = check_base_url(base_url)
        if (consumer_key is None) != (consumer_secret is None):
            raise ValidationError("consumer_key and consumer_secret go together", field="consumer_secret")
        self._signer = (
            OAuth1Signer(consumer_key, consumer_secret) if consumer_key and consumer_secret else None
        )
        self._user = user
        self.max_wait = max_wait
        self.retry = retry
        self._clock = clock
        self._sleep = sleep
        self._refreshes: dict[int, asyncio.Future[None]] = {}
        self._transport: Transport = transport or AiohttpTransport(
            session, timeouts=timeouts, max_connections=max_connections, ssl=True if ssl is None else ssl
        )
        self._oauth2 = OAuth2Refresher(self._transport, self.base_url)
        self.scheduler = Scheduler(
            rate_limits,
            clock=clock,
            sleep=sleep,
            max_in_flight=max_in_flight,
            clock_probe=self._probe_clock,
            store=store,
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections the client opened (a session it was given stays open) and the store."""
        if not self._closed:
            self._closed = True
            await self.scheduler.aclose()
            await self._transport.aclose()

    def rate_stats(self, user: User | str | None = None, endpoint: str | None = None) -> BudgetStats:
        """Counters (sent, waited seconds, 429s, max_wait refusals) for a user and/or endpoint, or all."""
        key = user.key if isinstance(user, (OAuth1User, BearerUser)) else user
        return self.scheduler.stats(key, endpoint)

    # -- endpoint coroutines ----------------------------------------------------------------------

    async def create_tweet(
        self,
        *,
        text: str | None = None,
        quote_tweet_id: str | None = None,
        for_super_followers_only: bool = False,
        reply: Reply | _NestedArg = None,
        media: Media | _NestedArg = None,
        poll: Poll | _NestedArg = None,
        reply_settings: str | None = None,
        geo: Geo | _NestedArg = None,
        direct_message_deep_link: str | None = None,
        user: User | None = None,
        max_wait: float | None = None,
    ) -> Tweet:
        """Create a post (``POST /2/tweets``) as ``user``. Nested fields take their class or a dict."""
        request = CreateTweet(
            text=text,
            quote_tweet_id=quote_tweet_id,
            for_super_followers_only=for_super_followers_only,
            reply=reply,
            media=media,
            poll=poll,
            reply_settings=reply_settings,
            geo=geo,
            direct_message_deep_link=direct_message_deep_link,
        )
        return await self.send(request, user=user, max_wait=max_wait)

    async def bookmark(
        self, tweet_id: str, *, user: BearerUser | None = None, max_wait: float | None = None
    ) -> bool:
        """Bookmark a post for ``user``, an OAuth 2.0 user; true when bookmarked."""
        return await self.send(Bookmark(tweet_id), user=user, max_wait=max_wait)

    async def add_collection_entry(
        self,
        id: str,
        tweet_id: str,
        *,
        user: OAuth1User | None = None,
        relative_to: str | None = None,
        above: bool = True,
        max_wait: float | None = None,
    ) -> CollectionResult:
        """Add a post to collection ``id`` (``custom-<digits>``) as an OAuth 1.0a user."""
        return await self.send(
            AddCollectionEntry(id, tweet_id, relative_to, above), user=user, max_wait=max_wait
        )

    async def curate_collection(
        self,
        id: str,
        changes: Iterable[CollectionChange | Mapping[str, str]],
        *,
        user: OAuth1User | None = None,
        max_wait: float | None = None,
    ) -> CollectionResult:
        """Apply 1 to 100 ``{"op": "add"|"remove", "tweet_id": ...}`` changes to collection ``id``."""
        return await self.send(CurateCollection(id, changes), user=user, max_wait=max_wait)

    # -- the send path ----------------------------------------------------------------------------

    @overload
    async def send(
        self,
        request: CreateTweet,
        *,
        user: User | None = ...,
        max_wait: float | None = ...,
        previously_attempted: bool = ...,
    ) -> Tweet: ...
    @overload
    async def send(
        self,
        request: Bookmark,
        *,
        user: User | None = ...,
        max_wait: float | None = ...,
        previously_attempted: bool = ...,
    ) -> bool: ...
    @overload
    async def send(
        self,
        request: AddCollectionEntry | CurateCollection,
        *,
        user: User | None = ...,
        max_wait: float | None = ...,
        previously_attempted: bool = ...,
    ) -> CollectionResult: ...
    @overload
    async def send(
        self,
        request: Request,
        *,
        user: User | None = ...,
        max_wait: float | None = ...,
        previously_attempted: bool = ...,
    ) -> Any: ...

    async def send(
        self,
        request: Request,
        *,
        user: User | None = None,
        max_wait: float | None = None,
        previously_attempted: bool = False,
    ) -> Any:
        """Send a request object as ``user`` (or the client's default user) and return its result.

        ``max_wait`` bounds the seconds spent waiting for rate budget (``None``: the client's default;
        ``math.inf``: no bound). ``previously_attempted`` says an earlier attempt of this same call may
        have reached X (a job resumed after a crash): a "duplicate" answer then means it was delivered.
        """
        if self._closed:
            raise RuntimeError("the client is closed")
        endpoint = endpoint_for(request)
        actual = self._user_for(user)
        endpoint.check_user(actual)
        prepared = endpoint.prepare(request, actual, self.base_url)
        wait = self.max_wait if max_wait is None else max_wait
        deadline = None if wait is None or wait == math.inf else self._clock() + wait
        return await self._send_retrying(endpoint, request, prepared, actual, deadline, previously_attempted)

    def _user_for(self, user: User | None) -> User:
        user = user if user is not None else self._user
        if user is None:
            raise ValidationError("no user given and the client has no default user", field="user")
        if not isinstance(user, (OAuth1User, BearerUser)):
            raise ValidationError(
                f"must be an OAuth1User or a BearerUser, got {type(user).__name__}", field="user"
            )
        if isinstance(user, OAuth1User) and self._signer is None:
            raise ValidationError(
                "OAuth 1.0a users need the client's consumer_key and consumer_secret", field="user"
            )
        return user

    async def _send_retrying(
        self,
        endpoint: Endpoint[Any, T],
        request: Request,
        prepared: Prepared,
        user: User,
        deadline: float | None,
        ambiguous: bool = False,
    ) -> T:
        """Retry transient failures, and tell a duplicate of our own unanswered attempt from a real one.

        A post is not idempotent: once an attempt may have reached X (the connection broke after the
        request was written, the answer timed out, or X failed with a 5xx), a later "duplicate content"
        answer means that attempt created the post, and the call ends in ``AlreadyPosted``.
        """
        state = _Attempts(ambiguous, ATTEMPTS.get())
        policy_deadline = None
        if self.retry is not None and self.retry.deadline is not None:
            policy_deadline = self._clock() + self.retry.deadline
        # The first attempt runs without tenacity: most calls need no other, and building the retry
        # machinery costs more CPU than the scheduler does.
        try:
            return await self._attempt(endpoint, request, prepared, user, deadline, state)
        except Exception as exc:
            if self.retry is None or not _retry.is_retryable(exc):
                raise
            first_failure: Exception | None = exc
        stop_at = None if policy_deadline is None else _stop_at(policy_deadline, self._clock)
        async for attempt in _retry.retrying(self.retry, self._sleep, stop_at):
            with attempt:
                if first_failure is not None:  # tenacity's attempt 1 is the one that already failed
                    failure, first_failure = first_failure, None
                    raise failure
                return await self._attempt(endpoint, request, prepared, user, deadline, state)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _attempt(
        self,
        endpoint: Endpoint[Any, T],
        request: Request,
        prepared: Prepared,
        user: User,
        deadline: float | None,
        state: _Attempts,
    ) -> T:
        """One attempt of a call, noting whether it may have reached X."""
        state.count += 1
        if state.counter is not None:
            state.counter[0] = state.count
        try:
            result = await self._send_handling_auth(endpoint, prepared, user, deadline)
        except TransportError as exc:
            state.ambiguous = state.ambiguous or exc.maybe_sent
            raise
        except ServerError:
            state.ambiguous = True
            raise
        except DuplicateContent as exc:
            if state.ambiguous and isinstance(request, CreateTweet):
                raise AlreadyPosted(
                    exc.status,
                    text=request.text,
                    attempts=state.count,
                    problem=exc.problem,
                    errors=exc.errors,
                    headers=exc.headers,
                    body=exc.body,
                    message=f"delivered by an earlier unanswered attempt ({state.count} attempts)",
                ) from None
            raise
        return endpoint.after_ambiguous(result) if state.ambiguous else result

    async def _send_handling_auth(
        self, endpoint: Endpoint[Any, T], prepared: Prepared, user: User, deadline: float | None
    ) -> T:
        """Mend what a 401 says once: re-sign with the server's clock (OAuth 1.0a code 135), or refresh
        an expired OAuth 2.0 token; a second 401 is final."""
        token = user.access_token
        try:
            return await self._send_budgeted(endpoint, prepared, user, deadline)
        except Unauthorized as exc:
            if isinstance(user, OAuth1User) and _timestamp_refused(exc) and self._learn_clock(exc):
                log.info(
                    "server clock differs by %.0fs; re-signing", self._signer.offset if self._signer else 0
                )
            elif isinstance(user, BearerUser) and user.refresh_token and user.client_id:
                await self._refresh(user, token)
            else:
                raise
        return await self._send_budgeted(endpoint, prepared, user, deadline)

    def _learn_clock(self, exc: Unauthorized) -> bool:
        date = server_date(exc.headers)
        if date is None or self._signer is None:
            return False
        self._signer.sync(date)
        return True

    async def _refresh(self, user: BearerUser, used_token: str) -> None:
        """Refresh ``user``'s token once, however many calls found it expired at the same time."""
        if user.access_token != used_token:
            return  # another call has refreshed it already
        task = self._refreshes.get(id(user))
        if task is None:
            task = asyncio.ensure_future(self._oauth2.refresh(user))
            self._refreshes[id(user)] = task
            task.add_done_callback(lambda _: self._refreshes.pop(id(user), None))
        await asyncio.shield(task)

    async def _send_budgeted(
        self, endpoint: Endpoint[Any, T], prepared: Prepared, user: User, deadline: float | None
    ) -> T:
        """Hold a permit around one send; a 429 that parks the budget puts the call back in the queue."""
        for _ in range(_MAX_REQUEUES):
            max_wait = None if deadline is None else max(0.0, deadline - self._clock())
            async with self.scheduler.acquire(user.key, endpoint.name, max_wait=max_wait) as permit:
                response = await self._send_single(prepared, user)
                permit.settle(response)
            if response.status != 429 or not permit.parked:
                break
        return self._result(endpoint, response, permit)

    async def _send_single(self, prepared: Prepared, user: User) -> Response:
        return await self._transport.send(self._sign(prepared, user))

    async def _probe_clock(self) -> Mapping[str, str]:
        """An unauthenticated HEAD whose ``Date`` header tells the server's clock; it costs no rate budget."""
        response = await self._transport.send(WireRequest("HEAD", self.base_url + "/2/openapi.json", {}))
        return response.headers

    def _sign(self, prepared: Prepared, user: User) -> WireRequest:
        if isinstance(user, BearerUser):
            authorization = user.authorization
        else:
            assert self._signer is not None  # checked in _user_for
            authorization = self._signer.authorization(prepared.method, prepared.url, prepared.form, user)
        headers = {"Authorization": authorization, "Content-Type": prepared.content_type}
        return WireRequest(prepared.method, prepared.url, headers, prepared.body, prepared.form)

    def _result(self, endpoint: Endpoint[Any, T], response: Response, permit: Permit) -> T:
        data = response.json()
        if response.status >= 400:
            raise error_from_response(response.status, data, response.headers, retry_at=permit.retry_at)
        if data is None:
            raise APIError(
                response.status, headers=response.headers, message=f"{endpoint.name}: empty or non-JSON body"
            )
        return endpoint.parse(data, response.status)


def _timestamp_refused(exc: Unauthorized) -> bool:
    detail = exc.problem.detail.lower() if exc.problem is not None else ""
    return 135 in exc.codes or "timestamp" in detail


class _Attempts:
    """What a call's attempts have learned: how many there were, and whether one may have reached X."""

    __slots__ = ("ambiguous", "count", "counter")

    def __init__(self, ambiguous: bool, counter: list[int] | None) -> None:
        self.ambiguous = ambiguous
        self.count = 0
        self.counter = counter


class _stop_at(tenacity.stop.stop_base):
    """Stop when the next attempt would start past a deadline on the client's (injectable) clock."""

    def __init__(self, deadline: float, clock: Callable[[], float]) -> None:
        self.deadline = deadline
        self.clock = clock

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.clock() + (retry_state.upcoming_sleep or 0.0) >= self.deadline
