"""A store that shares budgets between processes and machines through Redis.

Every take, settle and refund is one Lua script (``lua/take.lua``, ``settle.lua``, ``refund.lua``, each
after the shared ``window.lua``): one atomic round trip that applies the same rules as ``MemoryStore``
to hashes in Redis (one per window, expiring after it). Arguments and replies are JSON objects with
named fields, encoded and decoded in one place here. "Now" is Redis's ``TIME``
corrected by what this process knows of X's clock, so workers whose own clocks drift agree.

Waiting costs Redis nothing: a worker computes its wake-up from the stored reset. The one wait that has
no time, for the first answer of a window nobody has anchored yet, ends with a message on a pub/sub
channel that the settle script publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

from .._endpoints import ENDPOINTS
from .._errors import StoreUnavailable
from ._memory import MemoryStore
from ._store import (
    BOUNDLESS,
    SEP,
    UNLIMITED,
    Answer,
    OnAnswer,
    Skew,
    Taken,
    WindowLike,
    WindowSpec,
    WindowView,
    low,
    unseen_view,
)
from ._tokens import RedisTokens

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub
    from redis.commands.core import AsyncScript

__all__ = ["RedisStore"]

log = logging.getLogger("asyncx.store")

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.loads
#: A grant never settled stops counting as in flight after this long, unless the scheduler says less.
FLIGHT_TTL = 120.0
#: A probe (the one send of a window being learned or just reopened, which others wait on) stops
#: counting as in flight after this long: a dead process's probe holds the fleet no longer.
PROBE_TTL = 5.0


def _scripts() -> dict[str, str]:
    """Each operation's script: the shared window rules, then its own body."""
    folder = resources.files("asyncx._ratelimit").joinpath("lua")
    common = folder.joinpath("window.lua").read_text(encoding="utf-8")
    return {op: common + folder.joinpath(f"{op}.lua").read_text(encoding="utf-8") for op in _OPS}


_OPS = ("take", "settle", "refund")


#: One letter per endpoint in key names (the registry's ``code``): Redis pays for every byte of every key.
_ENDPOINT_CODES = {endpoint.name: endpoint.code for endpoint in ENDPOINTS.values()}
_SCOPE_IDS = {"window": 0, "user-24h": 1, "app-24h": 2}


@lru_cache(maxsize=8192)
def _place(key: str) -> tuple[str, int]:
    """Where a window lives in Redis: its key (after the prefix) and its record's id in that key.

    A user's windows of one endpoint share a key, ``{user}t``, and the braces are its Cluster hash tag;
    app-wide windows share ``{app:t}``. Keys without the scheduler's separators stand alone."""
    head, sep, scope = key.rpartition(SEP)
    if not sep:
        return "{" + key + "}", 0
    ident = _SCOPE_IDS.get(scope)
    if ident is None:
        ident = 3 + int(scope) if scope.isdigit() and int(scope) < 28 else 31
    owner, _, endpoint = head.rpartition(SEP)
    code = _ENDPOINT_CODES.get(endpoint, endpoint)
    if owner == SEP + "app":
        return "{app:" + code + "}", ident
    return "{" + owner + "}" + code, ident


def _window_arg(spec: WindowLike, k: int, ident: int, name: str) -> dict[str, Any]:
    arg: dict[str, Any] = {
        "seconds": spec.seconds,
        "trusted": int(spec.trusted),
        "guess": int(spec.guess),
        "k": k,
        "id": ident,
        "name": name,
    }
    if spec.limit is not None:
        arg["limit"] = spec.limit
    return arg


#: Connections to one Redis node per process.
_CONNECTIONS = 64


def connect(url: str, *, cluster: bool = False, timeout: float = 2.0) -> Redis:
    """A client for one Redis node, or for a Redis Cluster reached through any of its nodes (it follows
    MOVED and ASK redirections itself)."""
    try:
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.cluster import RedisCluster
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "asyncx needs the redis package for Redis: pip install 'asyncx-sdk[redis]'"
        ) from exc
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if cluster:
        return cast("Redis", RedisCluster.from_url(url, **options))
    # Calls beyond the pool wait for a connection: thousands of budgets asking at once is normal load.
    pool = BlockingConnectionPool.from_url(
        url, max_connections=_CONNECTIONS, timeout=60, health_check_interval=30, **options
    )
    return Redis.from_pool(pool)


def _redact(url: str) -> str:
    """The URL without its password, for repr and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit(parts._replace(netloc=user + host))


class _Fallback:
    """The ticket of a grant made by the local fallback store, to be settled there too."""


_FALLBACK = _Fallback()


class RedisStore:
    """Budgets shared by every process that points at the same Redis (``redis://host:6379/0``).

    Semantics are those of ``MemoryStore``: fixed windows, reconciliation with X's headers, 429 parking,
    and the ``max_wait`` estimate from the windows as last seen. Keys start with ``prefix`` and expire
    after their windows.

    ``cluster=True`` talks to a Redis Cluster: every script touches one hash slot (a budget's own
    windows share a key; app-wide windows are taken in a second script).

    If Redis cannot be reached, calls fail with ``asyncx.StoreUnavailable`` (nothing is sent blind). With
    ``fallback_share`` (0 < share <= 1), the process instead counts locally against that share of every
    limit, with a warning, and goes back to Redis once it answers again. ``redis_time=False`` uses the
    callers' clock instead of Redis's ``TIME``: for tests on a fake clock.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "asyncx",
        fallback_share: float | None = None,
        timeout: float = 2.0,
        redis_time: bool = True,
        retry_after_failure: float = 1.0,
        cluster: bool = False,
    ) -> None:
        if fallback_share is not None and not 0 < fallback_share <= 1:
            raise ValueError("fallback_share must be in (0, 1]")
        self._url = url
        self._cluster = cluster
        self._redis = connect(url, cluster=cluster, timeout=timeout)
        self._node: Redis | None = None
        self._gate = asyncio.Semaphore(_CONNECTIONS)
        self._tokens: RedisTokens | None = None
        #: Scripts run in Redis (one round trip each): for round trips per post.
        self.round_trips = 0
        self._discovery = asyncio.Lock()
        self._ready = False
        self._timeout = timeout
        scripts = _scripts()
        self._take = self._redis.register_script(scripts["take"])
        self._settle = self._redis.register_script(scripts["settle"])
        self._refund = self._redis.register_script(scripts["refund"])
        self._flight_ttl = FLIGHT_TTL
        self._prefix = prefix + ":"
        self._channel = prefix + ":answered"
        self._share = fallback_share
        self._fallback = MemoryStore() if fallback_share is not None else None
        self._redis_time = redis_time
        self._retry_after_failure = retry_after_failure
        self._down_until = 0.0
        self._offset: float | None = None  # Redis's clock minus ours, from the last quickest round trip
        self._offset_rtt = math.inf
        self._views: OrderedDict[str, WindowView] = OrderedDict()
        self._on_answer: OnAnswer | None = None
        self._listener: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        cluster = ", cluster=True" if self._cluster else ""
        return f"RedisStore({_redact(self._url)!r}, prefix={self._prefix[:-1]!r}{cluster})"

    # -- the Store interface ------------------------------------------------------------------------

    synchronous = False

    def configure(self, *, flight_ttl: float) -> None:
        """Count a grant never settled (its process died mid-request) as in flight for at most
        ``flight_ttl`` seconds: the client sets it to the longest a request can take."""
        self._flight_ttl = flight_ttl

    async def take(self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew) -> Taken:
        """Grant up to ``n`` sends that every window has room for, in one atomic script per hash slot;
        with ``fallback_share``, against the local share while Redis cannot be reached."""
        if self._use_fallback():
            return self._fallback_take(windows, n, now, skew)
        try:
            return await self._take_all(windows, n, now, skew)
        except StoreUnavailable:
            if self._fallback is None:
                raise
            return self._fallback_take(windows, n, now, skew)

    async def _take_all(self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew) -> Taken:
        """Take in every group of windows (one on a single node; one per hash slot on a Cluster), giving
        back what earlier groups granted beyond what a later one could."""
        granted = n
        taken: list[Sequence[WindowLike]] = []
        stop: Taken | None = None
        for _, group in self._groups(windows):
            reply, shift = await self._call(self._take, group, now, skew, {"n": granted})
            for spec, seen in zip(group, reply["windows"], strict=True):
                reset = seen.get("reset")
                self._remember(
                    spec.key,
                    WindowView(
                        int(seen["room"]),
                        seen.get("limit"),
                        None if reset is None else float(reset) - shift,
                        spec.seconds,
                        bool(seen["probing"]),
                    ),
                )
            got = int(reply["granted"])
            if got < granted:
                wake = reply.get("wake")
                waiting = int(reply["waiting"])
                if wake is not None:
                    stop = Taken(got, float(wake) - shift)
                else:
                    stop = Taken(got, None, group[waiting - 1].key if waiting else group[0].key)
                for earlier in taken:
                    await self._call(
                        self._refund, earlier, now, skew, {"n": granted - got, "channel": self._channel}
                    )
                granted = got
            taken.append(group)
            if not granted:
                break
        self._listen()
        return stop if stop is not None else Taken(n)

    async def settle(
        self,
        windows: Sequence[WindowLike],
        held: int,
        answer: Answer | None,
        now: float,
        skew: Skew,
        ticket: object = None,
    ) -> float | None:
        """Release one grant and reconcile the shared windows with X's answer (None: no answer came, so
        the send stays counted); for a 429, return when room comes back (local time)."""
        if ticket is _FALLBACK:
            assert self._fallback is not None
            return self._fallback.settle_now(windows, held, answer, now, skew)
        fields: dict[str, Any] = {"answered": answer is not None, "channel": self._channel}
        readings: Sequence[tuple[int | None, int, int] | None] = ()
        if answer is not None:
            fields["status"] = answer.status
            if answer.retry_after is not None:
                fields["retry_after"] = answer.retry_after
            readings = answer.readings
        back: float | None = None
        for positions, group in self._groups(windows):
            # The grant was counted in the first ``held`` windows of the budget.
            fields["held"] = sum(1 for i in positions if i < held)
            mine = [readings[i] if i < len(readings) else None for i in positions]
            reply, shift = await self._call(self._settle, group, now, skew, fields, mine)
            if reply.get("parked"):
                fields.pop("retry_after", None)  # one window parks for Retry-After, as in memory
            if reply.get("back") is not None:
                at = float(reply["back"]) - shift
                back = at if back is None else max(back, at)
        return back

    async def refund(
        self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew, ticket: object = None
    ) -> None:
        """Give back ``n`` grants that were never sent."""
        if ticket is _FALLBACK:
            assert self._fallback is not None
            self._fallback.refund_now(windows, n, now, skew)
            return
        for _, group in self._groups(windows):
            await self._call(self._refund, group, now, skew, {"n": n, "channel": self._channel})

    def take_now(self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew) -> Taken:
        """Not available: every operation is a round trip to Redis (``synchronous`` is False)."""
        raise NotImplementedError("RedisStore is not synchronous: await take()")

    def settle_now(
        self, windows: Sequence[WindowLike], held: int, answer: Answer | None, now: float, skew: Skew
    ) -> float | None:
        """Not available: every operation is a round trip to Redis (``synchronous`` is False)."""
        raise NotImplementedError("RedisStore is not synchronous: await settle()")

    def refund_now(self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew) -> None:
        """Not available: every operation is a round trip to Redis (``synchronous`` is False)."""
        raise NotImplementedError("RedisStore is not synchronous: await refund()")

    def view(self, windows: Sequence[WindowLike], now: float, skew: Skew) -> list[WindowView]:
        """The windows as this process last saw them in Redis, without a round trip (for estimates)."""
        out = []
        for spec in windows:
            seen = self._views.get(spec.key)
            if seen is None:
                out.append(unseen_view(spec))
            elif seen.reset is not None and now >= seen.reset:  # the window it was seen in has ended
                # As the memory store sees a reopened window: its limit is room once the probe answers.
                limit = seen.limit
                room = limit if limit is not None and limit > 0 else BOUNDLESS
                out.append(WindowView(room, limit, None, spec.seconds, limit != UNLIMITED))
            else:
                out.append(seen)
        return out

    async def check(self) -> None:
        """Raise ``StoreUnavailable`` unless Redis answers (for a dry run)."""
        try:
            await self._redis.ping()
        except Exception as exc:
            raise self._unreachable(exc) from None

    @property
    def tokens(self) -> RedisTokens:
        """OAuth 2.0 pairs shared through this Redis: a ``Client`` with this store keeps its refreshable
        ``BearerUser``'s tokens here, so the fleet refreshes each expired token once."""
        if self._tokens is None:
            self._tokens = RedisTokens(
                self._redis, self._prefix[:-1], ready=self._discover, unreachable=self._unreachable
            )
        return self._tokens

    def subscribe(self, on_answer: OnAnswer) -> None:
        """Have ``on_answer(key)`` called when another process settles a send in a window nobody had
        anchored yet (through a pub/sub channel), so budgets waiting on it ask again."""
        self._on_answer = on_answer

    async def aclose(self) -> None:
        """Stop listening and close the connections to Redis; a ``Client`` given the store calls it."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            # redis-py's pub/sub can swallow a cancellation while it reconnects: ask again, briefly.
            for _ in range(10):
                self._listener.cancel()
                done, _ = await asyncio.wait({self._listener}, timeout=0.1)
                if done:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        self._listener.result()
                    break
            else:
                log.debug("pub/sub listener did not stop; leaving it")
        await self._redis.aclose()
        if self._node is not None:
            await self._node.aclose()

    # -- helpers ---------------------------------------------------------------------------------------

    async def _call(
        self,
        script: AsyncScript,
        windows: Sequence[WindowLike],
        now: float,
        skew: Skew,
        fields: dict[str, Any],
        readings: Sequence[tuple[int | None, int, int] | None] = (),
    ) -> tuple[dict[str, Any], float]:
        """Run a script on ``windows`` in one round trip: the codec of arguments and replies. Returns the
        decoded reply and what to subtract from the times in it to get ours."""
        mode, arg = self._clock_arg(now, skew)
        keys: list[str] = []
        numbers: dict[str, int] = {}
        specs: list[dict[str, Any]] = []
        for spec in windows:
            where, ident = _place(spec.key)
            k = numbers.get(where)
            if k is None:
                k = numbers[where] = len(keys) + 1
                keys.append(self._prefix + where)
            specs.append(_window_arg(spec, k, ident, self._prefix + spec.key))
        for packed, reading in zip(specs, readings, strict=False):
            if reading is not None:
                limit, remaining, reset = reading
                packed["reading"] = {"limit": limit or 0, "remaining": remaining, "reset": reset}
        args = {
            "clock": {"mode": mode, "arg": arg},
            "ttl": self._flight_ttl,
            "pttl": PROBE_TTL,
            "windows": specs,
            **fields,
        }
        sent = time.time()
        self.round_trips += 1
        try:
            if self._cluster:
                raw = await self._on_cluster(script, keys, _dumps(args))
            else:
                raw = await script(keys=keys, args=[_dumps(args)])
        except Exception as exc:
            raise self._unreachable(exc) from None
        reply: dict[str, Any] = _loads(raw)
        self._learn_offset(float(reply["now"]), sent)
        return reply, arg - now if mode == "c" else arg + (self._offset or 0.0)

    async def _on_cluster(self, script: AsyncScript, keys: list[str], arg: str) -> Any:
        """Run a script on a Cluster, with at most as many commands in flight as its client keeps
        connections per node (beyond that it raises)."""
        async with self._gate:
            await self._discover()
            return await script(keys=keys, args=[arg])

    async def _discover(self) -> None:
        """On a Cluster, learn the slots once before any command: commands that race the client's first
        discovery can find their connection closed under them."""
        if self._cluster and not self._ready:
            async with self._discovery:
                if not self._ready:
                    await self._redis.initialize()
                    self._ready = True

    def _groups(self, windows: Sequence[WindowLike]) -> list[tuple[Sequence[int], Sequence[WindowLike]]]:
        """The windows one script may touch together, with their positions in ``windows``: all of them
        on a single node; on a Cluster, those of one key (one hash slot), a budget's own before the
        app-wide ones. Each group keeps the budget's order."""
        if not self._cluster or len(windows) < 2:
            return [(range(len(windows)), windows)]
        positions: dict[str, list[int]] = {}
        for i, spec in enumerate(windows):
            positions.setdefault(_place(spec.key)[0], []).append(i)
        return [(p, [windows[i] for i in p]) for p in positions.values()]

    def _clock_arg(self, now: float, skew: Skew) -> tuple[str, float]:
        """How the scripts get X's time: Redis's ``TIME`` plus a correction, or the caller's clock.

        Redis's clock stands for X's, kept within the bounds X's own ``Date`` headers set: it is the
        clock every worker shares, and it is usually as good as X's (both keep NTP time).
        """
        if not self._redis_time:
            return "c", now + low(skew)
        if skew is None or self._offset is None:
            return "r", 0.0
        least, most = skew[0] - self._offset, skew[1] - self._offset
        return "r", min(max(0.0, least), most)

    def _learn_offset(self, redis_now: float, sent: float) -> None:
        """Redis's clock minus ours, from the quickest recent round trip (its error is half of it)."""
        received = time.time()
        rtt = received - sent
        self._offset_rtt *= 1.01  # let older, quicker samples give way, so a drifting clock is followed
        if self._offset is None or rtt <= self._offset_rtt:
            self._offset = redis_now - (sent + received) / 2
            self._offset_rtt = rtt
        if self._down_until:
            log.warning("rate-limit store %s answers again", _redact(self._url))
            self._down_until = 0.0

    def _remember(self, key: str, view: WindowView) -> None:
        views = self._views
        views[key] = view
        views.move_to_end(key)
        if len(views) > 10_000:
            views.popitem(last=False)

    def _unreachable(self, exc: Exception) -> StoreUnavailable:
        """Redis did not answer: the error to raise; with a fallback, count locally for a while."""
        first = not self._down_until
        self._down_until = time.monotonic() + self._retry_after_failure
        message = f"rate-limit store {_redact(self._url)} unreachable: {exc.__class__.__name__}"
        if self._fallback is not None and first:
            log.warning(
                "%s; counting locally against %.0f%% of each limit", message, 100 * (self._share or 0)
            )
        return StoreUnavailable(message)

    def _use_fallback(self) -> bool:
        return self._fallback is not None and self._down_until > time.monotonic()

    def _fallback_take(self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew) -> Taken:
        assert self._fallback is not None and self._share is not None
        share = self._share
        scaled = [
            s
            if s.limit is None or s.limit == UNLIMITED
            else WindowSpec(s.key, max(1, math.floor(s.limit * share)), s.seconds, s.trusted, s.guess)
            for s in windows
        ]
        taken = self._fallback.take_now(scaled, n, now, skew)
        return taken._replace(ticket=_FALLBACK) if taken.granted else taken

    def _listen(self) -> None:
        if self._listener is None and self._on_answer is not None and not self._closed:
            self._listener = asyncio.get_running_loop().create_task(self._listen_forever())

    def _subscriber(self) -> Redis:
        """The client that listens: its own connection, with no read timeout, since it waits for news.
        A Cluster forwards every PUBLISH to all its nodes, so the node in the URL hears them all."""
        if self._node is None:
            from redis.asyncio import Redis

            self._node = Redis.from_url(self._url, socket_connect_timeout=self._timeout)
        return self._node

    async def _listen_forever(self) -> None:
        """Hand the keys other processes publish to the scheduler; reconnect when Redis comes back."""
        prefix = self._prefix.encode()
        while not self._closed:
            pubsub: PubSub = self._subscriber().pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                if self._on_answer is not None:
                    self._on_answer(None)  # answers published before this were missed
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes) and data.startswith(prefix) and self._on_answer is not None:
                        self._on_answer(data[len(prefix) :].decode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("pub/sub listener lost Redis: %s", exc.__class__.__name__)
                await asyncio.sleep(self._retry_after_failure)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
