"""OAuth 2.0 user tokens shared by every process that uses the same Redis (``RedisStore.tokens``).

X's refresh tokens are single-use: if two processes refresh one user's expired token, one of them spends
a refresh token the other already spent, and the user is locked out (``invalid_grant``). So a user's pair
is kept in Redis by user id, every process uses the pair there, and when it expires one process in the
fleet refreshes it under a lock. The new pair is written, fenced by the refresh token it was made from,
before anyone uses it; the others wait for it and adopt it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, TypeVar

from .._errors import StoreUnavailable, Unauthorized, XError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Exchange", "Pair", "RedisTokens"]

log = logging.getLogger("asyncx.store")

_T = TypeVar("_T")

#: ``(access_token, refresh_token)``.
Pair = tuple[str, str]
#: Spends a refresh token for a new pair (the client's request to X's token endpoint).
Exchange = Callable[[str], Awaitable[Pair]]

#: How long a stored pair outlives its last use: X's refresh tokens last months unused.
KEEP = 90 * 86_400.0
#: How long one refresh may hold a user's lock before others may take over (its process died).
LOCK_TTL = 15.0


def _script(name: str) -> str:
    lua = resources.files("asyncx._ratelimit").joinpath("lua")
    return lua.joinpath(f"tokens_{name}.lua").read_text(encoding="utf-8")


def _encode(pair: Pair) -> str:
    return json.dumps({"a": pair[0], "r": pair[1]}, separators=(",", ":"))


def _decode(raw: bytes | str) -> Pair:
    data = json.loads(raw)
    return str(data["a"]), str(data["r"])


class RedisTokens:
    """Users' OAuth 2.0 pairs in Redis, refreshed once for the whole fleet.

    Keys are ``{prefix}:{tok:<user id>}`` (the pair) and ``...:lock``; the braces keep both in one
    Cluster slot. The pairs are secrets: give Redis the protection the credentials file has.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        ready: Callable[[], Awaitable[None]],
        unreachable: Callable[[Exception], StoreUnavailable],
        lock_ttl: float = LOCK_TTL,
    ) -> None:
        self._redis = redis
        self._ready = ready
        self._unreachable = unreachable
        self._prefix = prefix
        self._lock_ttl = lock_ttl
        self._stored = redis.register_script(_script("stored"))
        self._write = redis.register_script(_script("write"))
        self._unlock = redis.register_script(_script("unlock"))

    def __repr__(self) -> str:
        return f"RedisTokens(prefix={self._prefix!r})"

    def _keys(self, user_id: str) -> tuple[str, str]:
        key = f"{self._prefix}:{{tok:{user_id}}}"
        return key, key + ":lock"

    async def adopt(self, user_id: str, pair: Pair) -> Pair:
        """The fleet's pair for the user: the stored one, or ``pair``, stored, if Redis holds none."""
        key, _ = self._keys(user_id)
        raw = await self._guarded(lambda: self._stored(keys=[key], args=[_encode(pair), int(KEEP * 1000)]))
        return _decode(raw)

    async def renew(
        self, user_id: str, refused: str, current: Pair, exchange: Exchange, own: Pair | None
    ) -> tuple[Pair, bool]:
        """A pair to use instead of the one whose access token ``refused`` was refused, and whether this
        process made it (then it alone runs ``on_refresh``).

        If the stored pair is already another, it is the answer. Otherwise the one process that takes
        the user's lock spends the stored refresh token (``current``'s if nothing is stored) and writes
        the new pair; the others wait for it. ``own``, the pair this process was given, is tried when X
        refuses the stored refresh token: the user may have authorised the app again.
        """
        return await self._guarded(lambda: self._renew(user_id, refused, current, exchange, own))

    async def _guarded(self, work: Callable[[], Awaitable[_T]]) -> _T:
        """``work()`` once the client is ready; Redis failing on the way is ``StoreUnavailable``."""
        try:
            await self._ready()
            return await work()
        except XError:
            raise
        except Exception as exc:
            raise self._unreachable(exc) from None

    async def _renew(
        self, user_id: str, refused: str, current: Pair, exchange: Exchange, own: Pair | None
    ) -> tuple[Pair, bool]:
        key, lock = self._keys(user_id)
        deadline = time.monotonic() + 2 * self._lock_ttl
        pause = 0.01
        while True:
            stored = await self._read(key)
            if stored is not None and stored[0] != refused:
                return stored, False
            owner = secrets.token_hex(8)
            if await self._redis.set(lock, owner, nx=True, px=int(self._lock_ttl * 1000)):
                return await self._refresh_locked(user_id, refused, current, exchange, own, owner)
            if time.monotonic() > deadline:
                raise Unauthorized(
                    401,
                    message=f"the token of user {user_id} is being refreshed elsewhere and no new one came",
                )
            await asyncio.sleep(pause)  # another process is refreshing: its pair lands in Redis
            pause = min(2 * pause, 0.2)

    async def _refresh_locked(
        self, user_id: str, refused: str, current: Pair, exchange: Exchange, own: Pair | None, owner: str
    ) -> tuple[Pair, bool]:
        key, lock = self._keys(user_id)
        keep = int(KEEP * 1000)
        try:
            stored = await self._read(key)  # another process may have written just before the lock
            if stored is not None and stored[0] != refused:
                return stored, False
            spent = stored[1] if stored is not None else current[1]
            try:
                fresh = await exchange(spent)
            except Unauthorized:
                if own is None or own[1] == spent:
                    raise
                log.warning(
                    "X refused the stored refresh token of user %s; trying the one this process was given",
                    user_id,
                )
                await self._write(keys=[key, lock], args=[owner, spent, _encode(own), keep])
                return (await self._read(key)) or own, False
            if await self._write(keys=[key, lock], args=[owner, spent, _encode(fresh), keep]):
                return fresh, True
            newer = await self._read(key)
            return (newer or fresh), False
        finally:
            await self._unlock(keys=[lock], args=[owner])

    async def _read(self, key: str) -> Pair | None:
        raw = await self._redis.get(key)
        return None if raw is None else _decode(raw)
