"""The client: endpoint coroutines over one send path you can read top to bottom.

``send`` validates and prepares the call (``_call``) and bounds it by its ``deadline``; ``_attempt`` makes
one attempt (reading back a post without text first when an earlier attempt may have landed), and
``_retried`` runs the attempts after a first that failed, under the retry policy. Each attempt waits for
a rate-limit permit in ``_budgeted``, signs (``_sign``) and sends through the transport, the only step that
does I/O, then ``_read`` turns the answer into a result or a typed error. A 401 that one more attempt can
mend (a stale clock, an expired OAuth 2.0 token) goes through ``_mended``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from ssl import SSLContext
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

import aiohttp

from . import _retry, _upload
from ._auth import BearerUser, OAuth1Signer, OAuth1User, User
from ._delivery import Call, OnAttempt, made_by, may_have_landed
from ._endpoints import endpoint_for
from ._errors import (
    APIError,
    ClientClosed,
    DeadlineExceeded,
    DeliveryUnknown,
    FieldError,
    MalformedResponse,
    Unauthorized,
    UsageError,
    ValidationError,
    XError,
    error_from_response,
)
from ._models import (
    AddCollectionEntry,
    Bookmark,
    CollectionChange,
    CollectionResult,
    CreateTweet,
    CurateCollection,
    EditOptions,
    Geo,
    Media,
    Poll,
    RateLimit,
    Reply,
    Request,
    Tweet,
    UploadedMedia,
    UserTweets,
)
from ._oauth2 import OAuth2Refresher
from ._ratelimit import HORIZON, BudgetStats, Permit, Scheduler, Store, read_answer, server_date
from ._retry import RetryPolicy
from ._transport import (
    _DEFAULT_TIMEOUTS,
    DEFAULT_MAX_BODY,
    AiohttpTransport,
    Response,
    Timeouts,
    Transport,
    WireRequest,
    check_base_url,
)
from ._upload import DEFAULT_SEGMENT, MediaSource, UploadSession
from ._validation import check_seconds, raise_if

if TYPE_CHECKING:
    import tenacity

    from ._ratelimit._tokens import RedisTokens

__all__ = ["DEFAULT_BASE_URL", "Client"]

log = logging.getLogger("asyncx")

DEFAULT_BASE_URL = "https://api.twitter.com"

T = TypeVar("T")

_NestedArg = Mapping[str, Any] | None


class _DefaultRetry:
    """Stands for ``RetryPolicy()`` in ``Client``'s signature, so tenacity loads with the first client."""

    def __repr__(self) -> str:
        return "RetryPolicy()"


_DEFAULT_RETRY: Any = _DefaultRetry()

#: How far (seconds) the server's clock may be from the one we sign with before a 401 is blamed on it.
_SIGNING_SLACK = 30.0
#: Slack (seconds) on the time a read-back starts at: X's clock and ours differ a little.
_READ_SLACK = 5.0

#: How often one call goes back to the queue after 429s that named a reset, before it gives up.
_MAX_REQUEUES = 5
#: Token refreshes within one attempt, when each new token expired while its call queued for budget.
_MAX_MENDS = 8


class Client:
    """An X API client for many users at once. Use it as ``async with asyncx.Client(...) as client``.

    ``consumer_key`` and ``consumer_secret`` are the app's keys, needed for OAuth 1.0a users.
    ``session`` is an aiohttp session to use (never closed by the client); ``user`` a default user
    for every call; ``rate_limits`` overrides the default limits per endpoint name
    (``{"create_tweet": asyncx.RateLimit(100, 900.0)}``, a list for several windows, ``app:<name>`` for
    app-wide ones). ``ssl`` is an SSLContext to verify X's certificate with (a test CA, say), and
    ``ca_bundle`` a PEM file of CAs to trust beside the system's (a corporate proxy's); verification is
    never turned off (``SSL_CERT_FILE`` is honoured too). ``proxy`` is an HTTP proxy URL for every
    request (a user's own ``proxy`` wins); without one, ``HTTPS_PROXY``, ``HTTP_PROXY`` and ``NO_PROXY``
    are honoured unless ``trust_env`` is false. ``max_body`` caps a response body (bytes, counted
    decompressed). ``timeouts`` bound one attempt, on a given ``session`` too; ``deadline`` (seconds,
    per call or for the client) bounds a whole call, every attempt and wait included.

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
        ca_bundle: str | Path | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
        max_body: int = DEFAULT_MAX_BODY,
        max_wait: float | None = None,
        deadline: float | None = None,
        max_in_flight: int = 256,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        store: Store | None = None,
        read_lag: float = 2.0,
    ) -> None:
        _check_options(
            session=(session, aiohttp.ClientSession),
            timeouts=(timeouts, Timeouts),
            retry=(None if retry is _DEFAULT_RETRY else retry, RetryPolicy),
        )
        for name, count in (("max_connections", max_connections), ("max_in_flight", max_in_flight)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValidationError(f"must be a whole number >= 1, got {count!r}", field=name)
        if max_wait is not None:
            _check_seconds("max_wait", max_wait)
        if deadline is not None:
            _check_seconds("deadline", deadline)
        #: The longest one call may take, every attempt and wait included (None: no bound but the
        #: retry policy's); past it the call raises ``DeadlineExceeded``.
        self.deadline = deadline
        _check_seconds("read_lag", read_lag)
        #: Seconds X's reads may lag its writes: a post is looked for no sooner after its last attempt.
        self.read_lag = read_lag
        if user is not None and not isinstance(user, (OAuth1User, BearerUser)):
            raise ValidationError(f"must be an OAuth1User or a BearerUser, got {type(user).__name__}", "user")
        for name, function in (("clock", clock), ("sleep", sleep)):
            if not callable(function):
                raise ValidationError("must be callable", field=name)
        if transport is not None and not callable(getattr(transport, "send", None)):
            raise ValidationError("must be an asyncx transport (with send and aclose)", field="transport")
        #: Where requests go: ``https://`` (or ``http://`` to a loopback host), without a trailing slash.
        self.base_url = check_base_url(base_url)
        if (consumer_key is None) != (consumer_secret is None):
            raise ValidationError("consumer_key and consumer_secret go together", field="consumer_secret")
        self._signer = (
            OAuth1Signer(consumer_key, consumer_secret, clock=clock)
            if consumer_key and consumer_secret
            else None
        )
        self._user = user
        #: The longest a call waits for rate budget before it raises ``RateLimited`` (None: no bound).
        self.max_wait = max_wait
        # The default policy (and tenacity with it) is made on the first retry: most calls need none.
        self._retry: RetryPolicy | None = retry
        self._clock = clock
        self._sleep = sleep
        self._refreshes: dict[int, asyncio.Future[None]] = {}
        # With a store that shares tokens: refreshable users whose pair came from it, by id, with the pair
        # each was given (tried if X refuses the stored one), and the adoptions under way.
        self._tokens: RedisTokens | None = getattr(store, "tokens", None)
        self._adopted: dict[int, tuple[str, str]] = {}
        self._adopting: dict[int, asyncio.Future[None]] = {}
        self._transport: Transport = transport or AiohttpTransport(
            session,
            timeouts=timeouts,
            max_connections=max_connections,
            ssl=ssl,
            ca_bundle=ca_bundle,
            proxy=proxy,
            trust_env=trust_env,
            max_body=max_body,
        )
        self._oauth2 = OAuth2Refresher(self._transport, self.base_url)
        #: The rate-limit scheduler every call waits in (``rate_stats`` reads its counters).
        self.scheduler = Scheduler(
            rate_limits,
            clock=clock,
            sleep=sleep,
            max_in_flight=max_in_flight,
            clock_probe=self._probe_clock,
            store=store,
            # The longest a request can be in flight: past it, a grant whose process died stops counting.
            flight_ttl=timeouts.connect + timeouts.total + 5.0,
        )
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._other_loop = (
            "this client runs on another event loop: make one client per loop (in pytest, give the "
            "test and the fixture that makes the client the same loop scope)"
        )
        self._calls: dict[asyncio.Task[Any], Call] = {}  # open calls, by the task awaiting each
        self._closing: set[asyncio.Task[Any]] = set()  # those aclose() is ending
        self._expired: set[asyncio.Task[Any]] = set()  # those whose deadline passed
        self._drained: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self, grace: float = 0.0) -> None:
        """End every open call with ``ClientClosed`` (marked ``maybe_delivered`` if it may have reached
        X), then close the store and the connections the client opened (a session it was given stays
        open). Once it returns, nothing more is sent.

        With ``grace`` (seconds), calls already on the wire get that long to be answered; nothing new is
        sent meanwhile (calls waiting for budget, or about to retry, end at once). A job stopped by a
        signal closes this way, so what X answered is recorded rather than left unknown.
        """
        if self._closed:
            return
        self._closed = True
        self.scheduler.stop()
        current = asyncio.current_task()
        if any(task is not current for task in self._calls):
            self._drained = asyncio.Event()
            if grace > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._drained.wait(), grace)
            ending = [task for task in self._calls if task is not current]
            for task in ending:
                self._closing.add(task)
                task.cancel()
            if ending:
                await self._drained.wait()
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
        card_uri: str | None = None,
        community_id: str | None = None,
        edit_options: EditOptions | _NestedArg = None,
        made_with_ai: bool = False,
        nullcast: bool = False,
        paid_partnership: bool = False,
        share_with_followers: bool = False,
        user: User | None = None,
        max_wait: float | None = None,
        deadline: float | None = None,
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
            card_uri=card_uri,
            community_id=community_id,
            edit_options=edit_options,
            made_with_ai=made_with_ai,
            nullcast=nullcast,
            paid_partnership=paid_partnership,
            share_with_followers=share_with_followers,
        )
        return await self.send(request, user=user, max_wait=max_wait, deadline=deadline)

    async def upload_media(
        self,
        source: MediaSource,
        *,
        user: User | None = None,
        media_category: str | None = None,
        media_type: str | None = None,
        alt_text: str | None = None,
        progress: Callable[[UploadSession], object] | None = None,
        resume: UploadSession | None = None,
        segment_size: int = DEFAULT_SEGMENT,
        max_wait: float | None = None,
        on_attempt: OnAttempt | None = None,
    ) -> UploadedMedia:
        """Upload media (a path, bytes or a seekable binary file) as ``user`` for a post to attach.

        The type is read from the file's first bytes unless given, and the category follows from it;
        both, and the size, are checked before anything is sent. A small image goes in one request;
        anything else in segments read from disk one at a time, then X's processing is awaited
        (``MediaProcessingFailed`` if it fails). ``alt_text`` is set once it is ready. ``progress`` sees an
        ``UploadSession`` after each step; pass the last one back as ``resume`` to go on after a crash.
        ``on_attempt`` is called before each request goes out, as with ``send``.
        """
        bound = self._user_for(user)

        async def send(request: Request) -> Any:
            return await self.send(request, user=bound, max_wait=max_wait, on_attempt=on_attempt)

        return await _upload.upload(
            send,
            source,
            media_category=media_category,
            media_type=media_type,
            alt_text=alt_text,
            progress=progress,
            resume=resume,
            clock=self._clock,
            sleep=self._sleep,
            segment_size=segment_size,
        )

    async def bookmark(
        self,
        tweet_id: str,
        *,
        user: BearerUser | None = None,
        max_wait: float | None = None,
        deadline: float | None = None,
    ) -> bool:
        """Bookmark a post for ``user``, an OAuth 2.0 user; true when bookmarked."""
        return await self.send(Bookmark(tweet_id), user=user, max_wait=max_wait, deadline=deadline)

    async def add_collection_entry(
        self,
        id: str,
        tweet_id: str,
        *,
        user: OAuth1User | None = None,
        relative_to: str | None = None,
        above: bool = True,
        max_wait: float | None = None,
        deadline: float | None = None,
    ) -> CollectionResult:
        """Add a post to collection ``id`` (``custom-<digits>``) as an OAuth 1.0a user."""
        return await self.send(
            AddCollectionEntry(id, tweet_id, relative_to, above),
            user=user,
            max_wait=max_wait,
            deadline=deadline,
        )

    async def curate_collection(
        self,
        id: str,
        changes: Iterable[CollectionChange | Mapping[str, str]],
        *,
        user: OAuth1User | None = None,
        max_wait: float | None = None,
        deadline: float | None = None,
    ) -> CollectionResult:
        """Apply 1 to 100 ``{"op": "add"|"remove", "tweet_id": ...}`` changes to collection ``id``."""
        return await self.send(CurateCollection(id, changes), user=user, max_wait=max_wait, deadline=deadline)

    async def user_tweets(
        self,
        user_id: str,
        *,
        start_time: float | None = None,
        since_id: str | None = None,
        max_results: int = 100,
        user: User | None = None,
        max_wait: float | None = None,
        deadline: float | None = None,
    ) -> tuple[Tweet, ...]:
        """A user's recent posts, newest first (``GET /2/users/:id/tweets``), read as ``user``: made at or
        after ``start_time`` (epoch seconds) or after ``since_id``, with their polls, media keys, and
        quoted and replied-to posts."""
        request = UserTweets(
            user_id=user_id, start_time=start_time, since_id=since_id, max_results=max_results
        )
        return await self.send(request, user=user, max_wait=max_wait, deadline=deadline)

    # -- the send path ----------------------------------------------------------------------------
    # send (validate) -> _run (retry) -> _attempt (delivery rules, auth mending) -> _budgeted (wait for
    # budget) -> _sign -> transport.send -> _read (the answer). Only the transport does I/O.

    @overload
    async def send(
        self,
        request: CreateTweet,
        *,
        user: User | None = ...,
        max_wait: float | None = ...,
        deadline: float | None = ...,
        maybe_delivered: bool = ...,
        on_attempt: OnAttempt | None = ...,
        attempted_at: float | None = ...,
    ) -> Tweet: ...
    @overload
    async def send(
        self,
        request: Bookmark,
        *,
        user: User | None = ...,
        max_wait: float | None = ...,
        deadline: float | None = ...,
        maybe_delivered: bool = ...,
        on_attempt: OnAttempt | None = ...,
        attempted_at: float | None = ...,
    ) -> bool: ...
    @overload
    async def send(
        self,
        request: AddCollectionEntry | CurateCollection,
        *,
        user: User | None = ...,
        max_wait: float | None = ...,
        deadline: float | None = ...,
        maybe_delivered: bool = ...,
        on_attempt: OnAttempt | None = ...,
        attempted_at: float | None = ...,
    ) -> CollectionResult: ...
    @overload
    async def send(
        self,
        request: UserTweets,
        *,
        user: User | None = ...,
        max_wait: float | None = ...,
        deadline: float | None = ...,
        maybe_delivered: bool = ...,
        on_attempt: OnAttempt | None = ...,
        attempted_at: float | None = ...,
    ) -> tuple[Tweet, ...]: ...
    @overload
    async def send(
        self,
        request: Request,
        *,
        user: User | None = ...,
        max_wait: float | None = ...,
        deadline: float | None = ...,
        maybe_delivered: bool = ...,
        on_attempt: OnAttempt | None = ...,
        attempted_at: float | None = ...,
    ) -> Any: ...

    async def send(
        self,
        request: Request,
        *,
        user: User | None = None,
        max_wait: float | None = None,
        deadline: float | None = None,
        maybe_delivered: bool = False,
        on_attempt: OnAttempt | None = None,
        attempted_at: float | None = None,
    ) -> Any:
        """Send a request object as ``user`` (or the client's default user) and return its result.

        ``max_wait`` bounds the seconds spent waiting for rate budget (``None``: the client's default;
        ``math.inf``: no bound). ``deadline`` bounds the whole call, every attempt and wait included
        (``None``: the client's); past it the call raises ``DeadlineExceeded``. ``maybe_delivered`` says
        an earlier attempt of this same call may have reached X (a job resumed after a crash): a
        "duplicate" answer then means it was delivered.
        ``on_attempt`` is called with an ``asyncx.Attempt`` just before each attempt goes out.
        ``attempted_at`` (epoch seconds) is when that earlier attempt went out, if known: a post without
        text is settled by reading the user's posts since then (``DeliveryUnknown`` if none can be read).
        """
        self._check_usable()
        if deadline is not None:
            _check_seconds("deadline", deadline)
        else:
            deadline = self.deadline
        call = self._call(request, user, max_wait, maybe_delivered, on_attempt, deadline)
        if attempted_at is not None:
            _check_seconds("attempted_at", attempted_at)
            call.written_at = (attempted_at, attempted_at)
        task = asyncio.current_task()
        assert task is not None
        self._calls[task] = call
        started = self._clock()
        # The whole call's bound, on the event loop's clock: it ends the call whatever the server does.
        timer = (
            None
            if deadline is None or deadline == math.inf
            else asyncio.get_running_loop().call_later(deadline, self._expire, task)
        )
        try:
            try:  # ``_run``, inlined: one coroutine fewer for every call
                return await self._attempt(call)
            except Exception as exc:
                if self.retry is None or not _retry.is_retryable(exc):
                    raise
                return await self._retried(call, exc, started)
        except asyncio.CancelledError:
            if task not in self._closing and task not in self._expired:
                raise
            uncancel = getattr(task, "uncancel", None)
            if uncancel is not None:
                uncancel()
            if task in self._closing:
                raise call.mark(ClientClosed("the client was closed while this call was open")) from None
            raise call.mark(
                DeadlineExceeded(f"the call's deadline of {deadline:g} s passed before it ended")
            ) from None
        except XError as exc:
            raise call.mark(exc) from None
        finally:
            if timer is not None:
                timer.cancel()
            del self._calls[task]
            self._closing.discard(task)
            self._expired.discard(task)
            if not self._calls and self._drained is not None:
                self._drained.set()

    def _expire(self, task: asyncio.Task[Any]) -> None:
        """A call's deadline passed: end it (``send`` turns the cancellation into ``DeadlineExceeded``)."""
        if task in self._calls and task not in self._closing:
            self._expired.add(task)
            task.cancel()

    @property
    def retry(self) -> RetryPolicy | None:
        """How calls retry transient failures (None: one attempt each)."""
        if self._retry is _DEFAULT_RETRY:
            self._retry = RetryPolicy()
        return self._retry

    def _bind_loop(self, loop: asyncio.AbstractEventLoop, why: str) -> None:
        """Tie the client to ``loop`` before its first call; a call from another loop raises ``UsageError``
        with ``why`` (FakeX says its answers would never come)."""
        self._loop, self._other_loop = loop, why

    def _check_usable(self) -> None:
        if self._closed:
            raise ClientClosed("the client is closed")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise UsageError(self._other_loop)

    def _call(
        self,
        request: Request,
        user: User | None,
        max_wait: float | None,
        maybe_delivered: bool,
        on_attempt: OnAttempt | None,
        deadline: float | None = None,
    ) -> Call:
        """Validate a call before anything is sent or budgeted. Its wait for budget is bounded by
        ``max_wait`` and by the call's ``deadline``: a wait that would outlast either is refused at once."""
        endpoint = endpoint_for(request)
        actual = self._user_for(user)
        endpoint.check_user(actual)
        if max_wait is not None:
            _check_seconds("max_wait", max_wait)
        if not isinstance(maybe_delivered, bool):
            raise ValidationError("must be true or false", field="maybe_delivered")
        if on_attempt is not None and not callable(on_attempt):
            raise ValidationError("must be callable", field="on_attempt")
        prepared = endpoint.prepare(request, actual, self.base_url)
        wait = self.max_wait if max_wait is None else max_wait
        if deadline is not None and (wait is None or deadline < wait):
            wait = deadline
        until = None if wait is None or wait == math.inf else self._clock() + wait
        return Call(endpoint, request, prepared, actual, until, maybe_delivered, on_attempt)

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

    async def _run(self, call: Call) -> Any:
        """Retry transient failures under the client's policy. The first attempt runs without tenacity:
        most calls need no other, and building the retry machinery costs more CPU than the scheduler."""
        started = self._clock()
        try:
            return await self._attempt(call)
        except Exception as exc:
            if self.retry is None or not _retry.is_retryable(exc):
                raise
            return await self._retried(call, exc, started)

    async def _retried(self, call: Call, failure: Exception, started: float) -> Any:
        """The attempts after a first one, started at ``started``, failed with ``failure``."""
        retry = self.retry
        assert retry is not None
        deadline = retry.deadline
        stop_at = None if deadline is None else _stop_at(started + deadline, self._clock)
        first_failure: Exception | None = failure
        async for attempt in _retry.retrying(retry, self._sleep, stop_at):
            with attempt:
                if first_failure is not None:  # tenacity's attempt 1 is the one that already failed
                    failure, first_failure = first_failure, None
                    raise failure
                return await self._attempt(call)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _attempt(self, call: Call) -> Any:
        """One attempt, with what its failure says of delivery; a 401 is mended once (re-signing with
        the server's clock for OAuth 1.0a code 135, or refreshing an OAuth 2.0 token). A post without
        text that may have landed is first looked for among the user's posts, not sent again blindly."""
        if call.reads_back():
            found = await self._read_back(call)
            if found is not None:
                return found
        try:
            try:
                result = await self._budgeted(call)
            except Unauthorized as exc:
                result = await self._mended(call, exc)
        except XError as exc:
            raise call.failed(exc) from None
        return call.endpoint.after_maybe_delivered(result) if call.maybe_delivered else result

    async def _mended(self, call: Call, refused: Unauthorized) -> Any:
        """The attempt again after a 401 that can be mended, or the 401. A refreshed OAuth 2.0 token can
        expire again while its call queues for budget: a 401 after such a wait is not final, and the
        token is refreshed again (up to ``_MAX_MENDS`` times)."""
        for _ in range(_MAX_MENDS):
            if not self._mend(call, refused):
                raise refused
            if isinstance(call.user, BearerUser):
                await self._refresh(call.user, call.token)
            try:
                return await self._budgeted(call)
            except Unauthorized as again:
                if not (isinstance(call.user, BearerUser) and call.waited):
                    raise
                refused = again
        raise refused

    async def _read_back(self, call: Call) -> Tweet | None:
        """The post an earlier attempt of ``call`` made, read from the user's posts; None when it was not
        made. Raises ``DeliveryUnknown`` when reading cannot tell."""
        request, user, since = call.request, call.user, call.written_at
        assert isinstance(request, CreateTweet)
        if since is None or user.user_id is None:
            why = "no user id to read" if since else "no time the earlier attempt went out"
            raise DeliveryUnknown(
                f"a post without text may have been made; reading back is impossible ({why})"
            )
        wait = since[1] + self.read_lag - self._clock()
        if wait > 0:  # X's reads can lag its writes by a moment
            await self._sleep(wait)
        read = UserTweets(user_id=user.user_id, start_time=max(0.0, since[0] - _READ_SLACK))
        reading = Call(
            endpoint_for(read),
            read,
            endpoint_for(read).prepare(read, user, self.base_url),
            user,
            None,
            False,
            None,
        )
        try:
            posts: tuple[Tweet, ...] = await self._run(reading)
        except XError as exc:
            raise DeliveryUnknown(
                f"a post without text may have been made, and reading the user's posts back failed: {exc}"
            ) from None
        found = [post for post in posts if made_by(request, post)]
        if found:
            log.info("a post without text of user %s was found delivered as %s", user.key, found[-1].id)
            return found[-1]  # the oldest: posts are read newest first
        return None

    def _mend(self, call: Call, exc: Unauthorized) -> bool:
        """Whether a 401 can be mended by one more attempt."""
        user = call.user
        if isinstance(user, OAuth1User):
            if self._signer is not None and self._signer.offset != call.offset:
                return True  # signed before another call learned the server's clock
            date = server_date(exc.headers)
            if (_timestamp_refused(exc) or self._clock_off(date)) and self._learn_clock(date):
                offset = self._signer.offset if self._signer else 0.0
                log.info("server clock differs by %.0fs; re-signing", offset)
                return True
            return False
        return bool(user.refresh_token and user.client_id)

    def _clock_off(self, date: float | None) -> bool:
        """Whether a 401's ``Date`` is far from the clock we sign with: X's v2 refuses a stale timestamp
        with a bare "Unauthorized", and only the server's clock tells why."""
        offset = self._signer.offset if self._signer else 0.0
        return date is not None and abs(date - (self._clock() + offset)) > _SIGNING_SLACK

    def _learn_clock(self, date: float | None) -> bool:
        if date is None or self._signer is None or abs(date - self._clock()) > HORIZON:
            return False
        self._signer.sync(date)
        return True

    async def _refresh(self, user: BearerUser, used_token: str | None) -> None:
        """Refresh ``user``'s token once, however many calls found it expired at the same time."""
        if user.access_token != used_token:
            return  # another call has refreshed it already
        if self._tokens is None:
            await _single_flight(self._refreshes, id(user), lambda: self._oauth2.refresh(user))
        else:
            await _single_flight(self._refreshes, id(user), lambda: self._renew(user, used_token or ""))

    async def _renew(self, user: BearerUser, refused: str) -> None:
        """Refresh through the shared store: one process in the fleet spends the refresh token."""
        assert self._tokens is not None and user.refresh_token is not None
        pair, mine = await self._tokens.renew(
            user.user_id,
            refused,
            (user.access_token, user.refresh_token),
            functools.partial(self._oauth2.exchange, user),
            self._adopted.get(id(user)),
        )
        user.access_token, user.refresh_token = pair
        if mine:
            await self._oauth2.announce(user)

    async def _adopt(self, user: BearerUser) -> None:
        """From a refreshable user's first call in this process, use the fleet's pair (or store this
        one): a process started with an older pair picks up the newest."""
        assert self._tokens is not None and user.refresh_token is not None
        tokens, own = self._tokens, (user.access_token, user.refresh_token)

        async def adopt() -> None:
            user.access_token, user.refresh_token = await tokens.adopt(user.user_id, own)
            self._adopted[id(user)] = own

        await _single_flight(self._adopting, id(user), adopt)

    async def _budgeted(self, call: Call) -> Any:
        """Hold a permit around one send; a 429 that parks the budget puts the call back in the queue."""
        user, endpoint, deadline = call.user, call.endpoint, call.deadline
        if (
            self._tokens is not None
            and type(user) is BearerUser
            and user.refresh_token
            and id(user) not in self._adopted
        ):
            await self._adopt(user)
        scheduler = self.scheduler
        for _ in range(_MAX_REQUEUES):
            # As ``async with scheduler.acquire(...)``, without a context manager and coroutines per send.
            permit = scheduler.grant_now(user.key, endpoint.name) or await scheduler.grant(
                user.key,
                endpoint.name,
                None if deadline is None else max(0.0, deadline - self._clock()),
            )
            call.waited = permit.waited > 0.0
            try:
                wire = self._sign(call, user)
                try:
                    call.writes(self._clock())
                    response = await self._transport.send(wire)
                except Exception as exc:
                    if not may_have_landed(exc):
                        permit.unused()  # nothing reached X (refused connection, a failing hook)
                    raise
                call.answered()
                permit.settle(read_answer(response.status, response.headers, self._clock()))
            finally:
                pending = scheduler.release(permit)
                if pending is not None:
                    await pending
            if response.status != 429 or not permit.parked:
                break
        return self._read(call, response, permit)

    async def _probe_clock(self) -> Mapping[str, str]:
        """An unauthenticated HEAD whose ``Date`` header tells the server's clock; it costs no rate budget."""
        response = await self._transport.send(WireRequest("HEAD", self.base_url + "/2/openapi.json", {}))
        return response.headers

    def _sign(self, call: Call, user: User) -> WireRequest:
        prepared = call.prepared
        if isinstance(user, BearerUser):
            call.token = user.access_token  # a 401 refreshes only if no other call has since
            authorization = user.authorization
        else:
            assert self._signer is not None  # checked in _user_for
            call.offset = self._signer.offset
            authorization = self._signer.authorization(prepared.method, prepared.url, prepared.form, user)
        headers = {"Authorization": authorization}
        if prepared.body is not None:
            headers["Content-Type"] = prepared.content_type
        return WireRequest(prepared.method, prepared.url, headers, prepared.body, prepared.form, user.proxy)

    def _read(self, call: Call, response: Response, permit: Permit) -> Any:
        """The result of a 2xx answer, or the typed error of any other."""
        status = response.status
        data = response.json()
        if 200 <= status < 300:
            if data is None and call.endpoint.empty_ok and not response.body.strip():
                data = {}
            if data is None:
                raise MalformedResponse(
                    status, headers=response.headers, message=f"{call.endpoint.name}: empty or non-JSON body"
                )
            return call.endpoint.parse(data, status)
        if 300 <= status < 400:
            where = response.headers.get("location", "")
            raise APIError(
                status,
                headers=response.headers,
                message=f"{status}: X redirected {call.endpoint.name} to {where[:200]!r}; asyncx never "
                "follows a redirect (check base_url)",
            )
        raise error_from_response(status, data, response.headers, retry_at=permit.retry_at)


def _check_options(**options: tuple[object, type]) -> None:
    """Each option is None or an instance of its type."""
    for name, (value, kind) in options.items():
        if value is not None and not isinstance(value, kind):
            raise ValidationError(f"must be {kind.__name__} or None, got {type(value).__name__}", field=name)


def _check_seconds(field: str, value: object) -> None:
    """A wait bound: seconds >= 0, ``math.inf`` for none."""
    errors: list[FieldError] = []
    check_seconds(errors, field, value, zero=True, infinite=True)
    raise_if(errors)


def _timestamp_refused(exc: Unauthorized) -> bool:
    detail = exc.problem.detail.lower() if exc.problem is not None else ""
    return 135 in exc.codes or "timestamp" in detail


async def _single_flight(
    flights: dict[int, asyncio.Future[None]], key: int, work: Callable[[], Awaitable[None]]
) -> None:
    """Run ``work()`` once for ``key`` however many callers ask at the same time; each awaits it (a
    caller cancelled while waiting leaves it running for the others)."""
    flight = flights.get(key)
    if flight is None:
        flight = flights[key] = asyncio.ensure_future(work())
        flight.add_done_callback(lambda _: flights.pop(key, None))
    await asyncio.shield(flight)


class _stop_at:
    """Stop when the next attempt would start past a deadline on the client's (injectable) clock."""

    __slots__ = ("clock", "deadline")

    def __init__(self, deadline: float, clock: Callable[[], float]) -> None:
        self.deadline = deadline
        self.clock = clock

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.clock() + (retry_state.upcoming_sleep or 0.0) >= self.deadline
