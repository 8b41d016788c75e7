"""``asyncx.bulk.run``: send many items through one client, journaled, yielding each item's outcome.

Items are taken from an iterable or an async iterable (a file, a queue) as room allows, so memory stays
flat however many there are; the client's scheduler spaces them out per user.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import attrs

from .._auth import BearerUser, OAuth1User, User
from .._client import Client
from .._delivery import Attempt
from .._endpoints import endpoint_for
from .._errors import AlreadyPosted, RateLimited, ServerError, TransportError, XError
from .._models import AddCollectionEntry, Bookmark, CollectionResult, Request, Tweet
from ._journal import FINAL, Journal

__all__ = ["Item", "Outcome", "Then", "run"]


@attrs.frozen
class Then:
    """What to do with a post once it exists: bookmark it as an OAuth 2.0 user, add it to a collection."""

    bookmark_as: BearerUser | None = None
    collection: str | None = None
    #: Who adds it to the collection (an OAuth 1.0a user); by default the poster, if it is one.
    collection_as: OAuth1User | None = None


def _digest(request: Request, user: User) -> str:
    return hashlib.sha1(f"{user.key}\x00{request!r}".encode()).hexdigest()


@attrs.frozen
class Item:
    """One action of a job. ``key`` names it in the journal (``line:12``); ``digest`` tells a changed item
    from the one journaled under the same key (by default, a hash of the request and the user)."""

    key: str
    request: Request
    user: User
    then: Then | None = None
    digest: str = attrs.field(default="")

    def __attrs_post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", _digest(self.request, self.user))


@attrs.frozen
class Outcome:
    """How one item (or one of its ``then`` steps) ended.

    ``status`` is ``done`` or ``failed``. ``resumed`` means the journal already had it done. A post
    delivered by an earlier, unanswered attempt is done with ``delivered_earlier`` and no ``tweet_id``
    (X does not say it). ``retryable`` failures (X unreachable, 5xx, no budget within ``max_wait``) are
    sent again when the job is run again with the same journal.
    """

    key: str
    action: str
    status: str
    tweet_id: str | None = None
    error: str | None = None
    error_type: str | None = None
    attempts: int = 0
    delivered_earlier: bool = False
    resumed: bool = False
    retryable: bool = False
    steps: tuple[Outcome, ...] = ()

    @property
    def ok(self) -> bool:
        """Done, and so is every ``then`` step."""
        return self.status == "done" and all(s.ok for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["steps"] = [s.to_dict() for s in self.steps]
        # Leave out what is unset; keep counts, even 0.
        return {k: v for k, v in data.items() if v is not None and v is not False and v != []}


async def _aiter(items: Iterable[Item] | AsyncIterable[Item]) -> AsyncIterator[Item]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def _outcome(
    key: str, action: str, state: str, attempts: int, result: dict[str, Any], resumed: bool
) -> Outcome:
    """An ``Outcome`` from a journal state (``done``, ``failed``, ``unknown``, ``retry``) and result."""
    return Outcome(
        key,
        action,
        "done" if state == "done" else "failed",
        result.get("tweet_id"),
        result.get("error"),
        result.get("error_type"),
        attempts,
        bool(result.get("delivered_earlier")),
        resumed=resumed,
        retryable=state in ("unknown", "retry"),
    )


async def _step(
    client: Client, journal: Journal | None, key: str, digest: str, request: Request, user: User
) -> Outcome:
    action = endpoint_for(request).name
    maybe_delivered = False
    if journal is not None:
        record = journal.get(key, digest)
        if record is not None and record.state in FINAL:
            return _outcome(key, action, record.state, record.attempts, record.result, resumed=True)
        maybe_delivered = record is not None and record.state in ("sending", "unknown")
        journal.sending(key, digest)
    attempts: list[Attempt] = []
    state = "done"
    result: dict[str, Any] = {}
    try:
        answer = await client.send(
            request, user=user, maybe_delivered=maybe_delivered, on_attempt=attempts.append
        )
        if isinstance(answer, Tweet):
            result = {"tweet_id": answer.id}
        elif isinstance(answer, CollectionResult) and not answer.ok:
            state = "failed"
            reasons = ", ".join(f"{e.op} {e.tweet_id}: {e.reason}" for e in answer.errors)
            result = {"error": f"not applied: {reasons}", "error_type": "CollectionError"}
    except AlreadyPosted:
        result = {"delivered_earlier": True}
    except XError as exc:
        if isinstance(exc, (TransportError, ServerError, RateLimited)):
            # Not refused: worth sending again on the next run, as a call that may have been delivered
            # if any attempt may have landed, so that a duplicate then counts as delivered.
            state = "unknown" if exc.maybe_delivered else "retry"
        else:
            state = "failed"
        result = {"error": str(exc), "error_type": type(exc).__name__}
    count = len(attempts)
    if journal is not None:
        journal.finish(key, state, count, result)
    return _outcome(key, action, state, count, result, resumed=False)


async def _process(client: Client, item: Item, journal: Journal | None) -> Outcome:
    outcome = await _step(client, journal, item.key, item.digest, item.request, item.user)
    then = item.then
    if then is None or outcome.status != "done":
        return outcome
    steps = []
    if then.bookmark_as is not None:
        steps.append(await _then(client, journal, item, outcome, "bookmark", then.bookmark_as))
    if then.collection is not None:
        adder = then.collection_as or (item.user if isinstance(item.user, OAuth1User) else None)
        steps.append(await _then(client, journal, item, outcome, "collection", adder))
    return attrs.evolve(outcome, steps=tuple(steps))


async def _then(
    client: Client, journal: Journal | None, item: Item, post: Outcome, step: str, user: User | None
) -> Outcome:
    key = f"{item.key}:{step}"
    action = "bookmark" if step == "bookmark" else "add_collection_entry"
    if post.tweet_id is None:
        why = "the post was delivered by an earlier attempt and X does not say its id"
        return Outcome(key, action, "failed", error=why, error_type="UnknownTweetId")
    if user is None:
        why = "collections need an OAuth 1.0a user: give collection_as"
        return Outcome(key, action, "failed", error=why, error_type="ValidationError")
    assert item.then is not None
    request: Request
    if step == "bookmark":
        request = Bookmark(post.tweet_id)
    else:
        assert item.then.collection is not None
        request = AddCollectionEntry(item.then.collection, post.tweet_id)
    return await _step(client, journal, key, _digest(request, user), request, user)


async def run(
    client: Client,
    items: Iterable[Item] | AsyncIterable[Item],
    *,
    journal: Journal | str | Path | None = None,
    concurrency: int = 100,
) -> AsyncIterator[Outcome]:
    """Send every item through ``client`` and yield each ``Outcome`` as it ends (not in input order).

    ``journal`` (a path or a ``Journal``) records each step before and after it is sent, so running the
    same items again with it skips what is done and settles what was in flight. At most
    ``concurrency`` items are under way at once; the rest are read only as room frees up.

    Example::

        async for outcome in asyncx.bulk.run(client, items, journal="job.journal.sqlite"):
            print(outcome.key, outcome.status, outcome.tweet_id or outcome.error)
    """
    owned = isinstance(journal, (str, Path))
    store = Journal(journal) if isinstance(journal, (str, Path)) else journal
    results: asyncio.Queue[Outcome | BaseException | None] = asyncio.Queue(maxsize=concurrency)
    room = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()

    async def work(item: Item) -> None:
        try:
            outcome: Outcome | BaseException = await _process(client, item, store)
        except Exception as exc:  # not an XError: a bug or misuse; hand it to the caller
            outcome = exc
        finally:
            room.release()
        await results.put(outcome)

    async def feed() -> None:
        try:
            async for item in _aiter(items):
                await room.acquire()
                task = asyncio.get_running_loop().create_task(work(item))
                running.add(task)
                task.add_done_callback(running.discard)
            while running:
                await asyncio.gather(*list(running))
        except BaseException as exc:
            await results.put(exc)
            raise
        finally:
            await results.put(None)

    feeder = asyncio.get_running_loop().create_task(feed())
    try:
        while (outcome := await results.get()) is not None:
            if isinstance(outcome, BaseException):
                raise outcome
            yield outcome
    finally:
        feeder.cancel()
        for task in list(running):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feeder
        if owned and store is not None:
            store.close()
