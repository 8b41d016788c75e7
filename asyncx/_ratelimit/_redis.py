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
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .._errors import StoreUnavailable
from ._memory import MemoryStore
from ._store import (
    BOUNDLESS,
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


def _scripts() -> dict[str, str]:
    """Each operation's script: the shared window rules, then its own body."""
    folder = resources.files("asyncx._ratelimit").joinpath("lua")
    common = folder.joinpath("window.lua").read_text(encoding="utf-8")
    return {op: common + folder.joinpath(f"{op}.lua").read_text(encoding="utf-8") for op in _OPS}


_OPS = ("take", "settle", "refund")


def _window_arg(spec: WindowLike) -> dict[str, Any]:
    arg: dict[str, Any] = {"seconds": spec.seconds, "trusted": int(spec.trusted), "guess": int(spec.guess)}
    if spec.limit is not None:
        arg["limit"] = spec.limit
    return arg


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
    ) -> None:
        if fallback_share is not None and not 0 < fallback_share <= 1:
            raise ValueError("fallback_share must be in (0, 1]")
        try:
            from redis.asyncio import Redis
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("RedisStore needs the redis package: pip install 'asyncx[redis]'") from exc
        self._url = url
        self._redis: Redis = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30
        )
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
        return f"RedisStore({_redact(self._url)!r}, prefix={self._prefix[:-1]!r})"

    # -- the Store interface ------------------------------------------------------------------------

    synchronous = False

    def configure(self, *, flight_ttl: float) -> None:
        self._flight_ttl = flight_ttl

    async def take(self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew) -> Taken:
        if self._use_fallback():
            return self._fallback_take(windows, n, now, skew)
        try:
            reply, shift = await self._call(self._take, windows, now, skew, {"n": n})
        except StoreUnavailable:
            if self._fallback is None:
                raise
            return self._fallback_take(windows, n, now, skew)
        self._listen()
        for spec, seen in zip(windows, reply["windows"], strict=True):
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
        granted = int(reply["granted"])
        if granted == n:
            return Taken(granted)
        wake = reply.get("wake")
        if wake is not None:
            return Taken(granted, float(wake) - shift)
        waiting = int(reply["waiting"])
        return Taken(granted, None, windows[waiting - 1].key if waiting else windows[0].key)

    async def settle(
        self,
        windows: Sequence[WindowLike],
        held: int,
        answer: Answer | None,
        now: float,
        skew: Skew,
        ticket: object = None,
    ) -> float | None:
        if ticket is _FALLBACK:
            assert self._fallback is not None
            return self._fallback.settle_now(windows, held, answer, now, skew)
        fields: dict[str, Any] = {"held": held, "answered": answer is not None, "channel": self._channel}
        readings: Sequence[tuple[int | None, int, int] | None] = ()
        if answer is not None:
            fields["status"] = answer.status
            if answer.retry_after is not None:
                fields["retry_after"] = answer.retry_after
            readings = answer.readings
        reply, shift = await self._call(self._settle, windows, now, skew, fields, readings)
        back = reply.get("back")
        return None if back is None else float(back) - shift

    async def refund(
        self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew, ticket: object = None
    ) -> None:
        if ticket is _FALLBACK:
            assert self._fallback is not None
            self._fallback.refund_now(windows, n, now, skew)
            return
        await self._call(self._refund, windows, now, skew, {"n": n, "channel": self._channel})

    def take_now(self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew) -> Taken:
        raise NotImplementedError("RedisStore is not synchronous: await take()")

    def settle_now(
        self, windows: Sequence[WindowLike], held: int, answer: Answer | None, now: float, skew: Skew
    ) -> float | None:
        raise NotImplementedError("RedisStore is not synchronous: await settle()")

    def refund_now(self, windows: Sequence[WindowLike], n: int, now: float, skew: Skew) -> None:
        raise NotImplementedError("RedisStore is not synchronous: await refund()")

    def view(self, windows: Sequence[WindowLike], now: float, skew: Skew) -> list[WindowView]:
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

    def subscribe(self, on_answer: OnAnswer) -> None:
        self._on_answer = on_answer

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self._redis.aclose()

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
        specs = [_window_arg(spec) for spec in windows]
        for spec, reading in zip(specs, readings, strict=False):
            if reading is not None:
                limit, remaining, reset = reading
                spec["reading"] = {"limit": limit or 0, "remaining": remaining, "reset": reset}
        args = {"clock": {"mode": mode, "arg": arg}, "ttl": self._flight_ttl, "windows": specs, **fields}
        sent = time.time()
        try:
            raw = await script(keys=[self._prefix + s.key for s in windows], args=[_dumps(args)])
        except Exception as exc:
            raise self._unreachable(exc) from None
        reply: dict[str, Any] = _loads(raw)
        self._learn_offset(float(reply["now"]), sent)
        return reply, arg - now if mode == "c" else arg + (self._offset or 0.0)

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

    async def _listen_forever(self) -> None:
        """Hand the keys other processes publish to the scheduler; reconnect when Redis comes back."""
        prefix = self._prefix.encode()
        while not self._closed:
            pubsub: PubSub = self._redis.pubsub(ignore_subscribe_messages=True)
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
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
