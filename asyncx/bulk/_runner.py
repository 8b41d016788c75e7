"""``asyncx.bulk.run``: send many items through one client, journaled, yielding each item's outcome.

Items are taken from an iterable or an async iterable (a file, a queue) as room allows, so memory stays
flat however many there are; the client's scheduler spaces them out per user.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs

from .._auth import BearerUser, OAuth1User, User
from .._client import Client
from .._delivery import Attempt
from .._endpoints import endpoint_for
from .._errors import (
    AlreadyPosted,
    APIError,
    DeliveryUnknown,
    DuplicateContent,
    Forbidden,
    MalformedResponse,
    MediaProcessingFailed,
    Unauthorized,
    ValidationError,
    XError,
)
from .._models import AddCollectionEntry, Bookmark, CollectionResult, CreateTweet, Media, Request, Tweet
from .._upload import UploadSession, file_fingerprint
from ._journal import FINAL, Journal, Record

__all__ = ["Item", "MediaFile", "Outcome", "Then", "run"]


@attrs.frozen
class Then:
    """What to do with a post once it exists: bookmark it as an OAuth 2.0 user, add it to a collection."""

    bookmark_as: BearerUser | None = None
    collection: str | None = None
    #: Who adds it to the collection (an OAuth 1.0a user); by default the poster, if it is one.
    collection_as: OAuth1User | None = None


@attrs.frozen
class MediaFile:
    """A file to upload and attach to an item's post, with its alt text."""

    path: str
    alt_text: str | None = None


def _digest(request: Request, user: User) -> str:
    return hashlib.sha1(f"{user.key}\x00{request!r}".encode()).hexdigest()


@attrs.frozen
class Item:
    """One action of a job. ``key`` names it in the journal (``order:12``, say); ``digest`` tells a changed
    item from the one journaled under the same key (by default, a hash of the request and the user)."""

    key: str
    request: Request
    user: User
    then: Then | None = None
    digest: str = attrs.field(default="")
    #: Files uploaded before the post is sent; their media ids replace the request's ``media``.
    uploads: tuple[MediaFile, ...] = ()

    def __attrs_post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", _digest(self.request, self.user))


@attrs.frozen
class Outcome:
    """How one item (or one of its ``then`` steps) ended.

    ``status`` is ``done``, ``failed`` or ``unknown`` (a post without text that may exist, and that reading
    back could not settle); ``kind`` says which of the not-done ones a rerun sends again. ``resumed``
    means the journal already had it done. A post
    delivered by an earlier, unanswered attempt is done with ``delivered_earlier`` and no ``tweet_id``
    (X does not say it). ``retryable`` failures (anything but X refusing the request for its content)
    are sent again when the job is run again with the same journal. ``user`` is the key of the user who
    sent it.
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
    user: str | None = None

    @property
    def ok(self) -> bool:
        """Done, and so is every ``then`` step."""
        return self.status == "done" and all(s.ok for s in self.steps)

    @property
    def kind(self) -> str:
        """How the item ended, for a summary: ``done`` (with every step), ``unknown`` (may exist, not
        settled), ``not_done`` (sent again by a rerun) or ``failed`` (refused for its content)."""
        if self.ok:
            return "done"
        if self.status == "unknown":
            return "unknown"
        return "not_done" if self.retryable else "failed"

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON-ready data (``asyncx post --report`` writes these), unset fields left out."""
        data = attrs.asdict(self, recurse=False)
        data["steps"] = [s.to_dict() for s in self.steps]
        # Leave out what is unset; keep counts, even 0.
        return {k: v for k, v in data.items() if v is not None and v is not False and v != []}


def _taker(items: Iterable[Item] | AsyncIterable[Item]) -> Callable[[], Awaitable[Item | None]]:
    """A function the workers share to take the next item (None when there are no more)."""
    if isinstance(items, AsyncIterable):
        source = aiter(items)
        lock = asyncio.Lock()  # one reader at a time: an async iterator is not safe to share

        async def take_async() -> Item | None:
            async with lock:
                return await anext(source, None)

        return take_async
    plain = iter(items)

    async def take() -> Item | None:
        return next(plain, None)

    return take


def _outcome(
    key: str, action: str, state: str, attempts: int, result: dict[str, Any], resumed: bool, user: str
) -> Outcome:
    """An ``Outcome`` from a journal state (``done``, ``failed``, ``unsettled``, ``unknown``, ``retry``)."""
    return Outcome(
        key,
        action,
        {"done": "done", "unsettled": "unknown"}.get(state, "failed"),
        result.get("tweet_id"),
        result.get("error"),
        result.get("error_type"),
        attempts,
        bool(result.get("delivered_earlier")),
        resumed=resumed,
        retryable=state in ("unknown", "retry"),
        user=user,
    )


#: 401s (after the refresh and clock retries) before a user's remaining lines stop being sent.
REFUSALS_BEFORE_GIVING_UP = 3


class StepLog(Protocol):
    """Where each step's state is kept between runs: a ``Journal``, or a queue's records."""

    def get(self, key: str, digest: str) -> Record | None: ...
    async def sending_soon(self, key: str, digest: str) -> None: ...
    def finish(self, key: str, state: str, attempts: int, result: dict[str, Any]) -> None: ...
    def upload(self, key: str) -> dict[str, Any] | None: ...
    def save_upload(self, key: str, state: dict[str, Any]) -> None: ...


@runtime_checkable
class Source(Protocol):
    """Items that come with their own step log (a ``RedisQueue``): each item is handed back when it
    has ended, so the source can record it and take it off the queue."""

    @property
    def journal(self) -> StepLog: ...
    def __aiter__(self) -> AsyncIterator[Item]: ...
    async def ended(self, item: Item, outcome: Outcome) -> None: ...


class _Job:
    """What every step of one run shares: the client, the journal, and what the run has learned."""

    __slots__ = ("client", "journal", "refusals", "refused_after", "resend_unknown", "retry_failed")

    def __init__(
        self,
        client: Client,
        journal: StepLog | None,
        retry_failed: bool,
        resend_unknown: bool,
        refused_after: int,
    ) -> None:
        self.client = client
        self.journal = journal
        self.retry_failed = retry_failed
        self.resend_unknown = resend_unknown
        self.refused_after = refused_after
        #: (user key, credential kind) -> 401s in a row. Kept per kind: a user's OAuth 2.0 token that
        #: works (or refreshes) says nothing of their OAuth 1.0a secret, and the other way round.
        self.refusals: dict[tuple[str, type], int] = {}

    def allow(self, user: User) -> None:
        """Before every attempt, not once per line: calls queued for budget meanwhile must not go once
        X has refused these credentials of the user ``refused_after`` times in a row."""
        if self.refusals.get((user.key, type(user)), 0) >= self.refused_after:
            raise _CredentialsRefused

    def answered(self, user: User, exc: XError | None = None) -> None:
        """Count a 401 against the credentials the user sent with; any other answer clears the count."""
        which = (user.key, type(user))
        if isinstance(exc, Unauthorized):
            self.refusals[which] = self.refusals.get(which, 0) + 1
        elif exc is None:
            self.refusals.pop(which, None)

    def final(self, state: str) -> bool:
        if state == "failed":
            return not self.retry_failed
        if state == "unsettled":
            return not self.resend_unknown
        return state in FINAL


class _CredentialsRefused(Exception):
    """Raised before an attempt of a user whose credentials X keeps refusing: it is not sent."""


def _refused_result(user: User) -> dict[str, Any]:
    why = f"credentials refused: user {user.key}'s requests were answered 401; fix them and run again"
    return {"error": why, "error_type": "CredentialsRefused"}


#: X's 403 detail for a reply to a post that is gone: the line's content, not its credentials, is at fault.
_REPLY_GONE = "deleted or not visible to you"


def _refused_for_content(exc: XError) -> bool:
    """X refused the request itself (a 400, a duplicate of no attempt of ours): sending it again as it is
    cannot succeed, so the line stays failed until ``retry_failed``. Anything else is sent again."""
    if isinstance(exc, ValidationError):
        return True
    if isinstance(exc, Forbidden) and exc.problem is not None and _REPLY_GONE in exc.problem.detail:
        return True  # a reply to a post that is deleted or hidden from the user
    return isinstance(exc, APIError) and (
        exc.status == 400 or (isinstance(exc, DuplicateContent) and not exc.maybe_delivered)
    )


async def _step(job: _Job, key: str, digest: str, request: Request, user: User) -> Outcome:
    action = endpoint_for(request).name
    maybe_delivered = False
    attempted_at: float | None = None
    journal = job.journal
    if journal is not None:
        record = journal.get(key, digest)
        if record is not None and job.final(record.state):
            return _outcome(
                key, action, record.state, record.attempts, record.result, resumed=True, user=user.key
            )
        maybe_delivered = record is not None and record.state in ("sending", "unknown")
        attempted_at = record.first_sent if record is not None and maybe_delivered else None
        await journal.sending_soon(key, digest)
    attempts: list[Attempt] = []

    def attempting(attempt: Attempt) -> None:
        job.allow(user)
        attempts.append(attempt)

    state = "done"
    result: dict[str, Any] = {}
    try:
        answer = await job.client.send(
            request,
            user=user,
            maybe_delivered=maybe_delivered,
            on_attempt=attempting,
            attempted_at=attempted_at,
        )
        job.answered(user)
        if isinstance(answer, Tweet):
            result = {"tweet_id": answer.id}
        elif isinstance(answer, CollectionResult) and not answer.ok:
            state = "failed"
            reasons = ", ".join(f"{e.op} {e.tweet_id}: {e.reason}" for e in answer.errors)
            result = {"error": f"not applied: {reasons}", "error_type": "CollectionError"}
    except _CredentialsRefused:  # nothing more was sent: a rerun with fixed credentials sends it
        state = "unknown" if maybe_delivered or any(a.maybe_delivered for a in attempts) else "retry"
        result = _refused_result(user)
    except AlreadyPosted:
        result = {"delivered_earlier": True}
    except DeliveryUnknown as exc:  # may exist; not sent again unless resend_unknown
        state = "unsettled"
        result = {"error": str(exc), "error_type": "DeliveryUnknown"}
    except MalformedResponse as exc:  # X accepted it; its answer just lacks the id
        result = {"error": f"delivered, id unknown: {exc}", "error_type": "MalformedResponse"}
    except XError as exc:
        job.answered(user, exc)
        # Unless refused for what it is, sent again on the next run: as a call that may have been
        # delivered if any attempt may have landed, so that a duplicate then counts as delivered.
        state = "failed" if _refused_for_content(exc) else "unknown" if exc.maybe_delivered else "retry"
        result = {"error": str(exc), "error_type": type(exc).__name__}
    count = len(attempts)
    if journal is not None:
        journal.finish(key, state, count, result)
    return _outcome(key, action, state, count, result, resumed=False, user=user.key)


def _fingerprint(path: str) -> str | None:
    try:
        return file_fingerprint(path)
    except XError:
        return None  # gone: the upload reports it


#: A finished upload is used again only while X keeps it this much longer: the post must still find it.
_MEDIA_MARGIN = 600.0


async def _uploaded(job: _Job, item: Item) -> Request | Outcome:
    """The item's post with its files uploaded (or what stopped them). Each upload's progress is in the
    journal, so a rerun resends no segment X holds, and uploads nothing again X still keeps."""
    journal = job.journal
    if journal is not None:
        record = journal.get(item.key, item.digest)
        if record is not None and job.final(record.state):
            return item.request  # the post is done: its media are not needed again
    client, ids = job.client, []
    for index, media in enumerate(item.uploads):
        key = f"{item.key}:media:{index}"
        saved = journal.upload(key) if journal is not None else None
        # Taken before the upload: what is recorded is the file as it was read, even if it changes during.
        fingerprint = _fingerprint(media.path)
        if (
            saved is not None
            and saved.get("done")
            and saved["expires_at"] > client.scheduler.now() + _MEDIA_MARGIN
            and saved.get("fingerprint") == fingerprint
        ):
            ids.append(saved["media_id"])  # X still holds this very file
            continue
        resume = UploadSession(**saved["session"]) if saved is not None and "session" in saved else None

        def progress(session: UploadSession, key: str = key) -> None:
            if journal is not None:
                journal.save_upload(key, {"session": attrs.asdict(session)})

        try:
            uploaded = await client.upload_media(
                media.path,
                user=item.user,
                alt_text=media.alt_text,
                progress=progress,
                resume=resume,
                on_attempt=lambda _: job.allow(item.user),
            )
        except _CredentialsRefused:  # nothing was sent: a rerun with fixed credentials uploads it
            return _outcome(
                item.key, "create_tweet", "retry", 0, _refused_result(item.user), False, item.user.key
            )
        except XError as exc:
            job.answered(item.user, exc)
            # Nothing is journaled for the post: a rerun tries the upload again (resuming it), and a file
            # X will not take is refused again before a byte is sent.
            refused = isinstance(exc, MediaProcessingFailed) or _refused_for_content(exc)
            result = {"error": f"uploading {media.path}: {exc}", "error_type": type(exc).__name__}
            return _outcome(
                item.key, "create_tweet", "failed" if refused else "retry", 0, result, False, item.user.key
            )
        job.answered(item.user)
        if journal is not None:
            done = {"done": True, "media_id": uploaded.id, "expires_at": uploaded.expires_at}
            journal.save_upload(key, {**done, "fingerprint": fingerprint})
        ids.append(uploaded.id)
    assert isinstance(item.request, CreateTweet)
    return attrs.evolve(item.request, media=Media(media_ids=tuple(ids)))


async def _process(job: _Job, item: Item) -> Outcome:
    request = item.request
    if item.uploads:
        ready = await _uploaded(job, item)
        if isinstance(ready, Outcome):
            return ready
        request = ready
    outcome = await _step(job, item.key, item.digest, request, item.user)
    then = item.then
    if then is None or outcome.status != "done":
        return outcome
    steps = []
    if then.bookmark_as is not None:
        steps.append(await _then(job, item, outcome, "bookmark", then.bookmark_as))
    if then.collection is not None:
        adder = then.collection_as or (item.user if isinstance(item.user, OAuth1User) else None)
        steps.append(await _then(job, item, outcome, "collection", adder))
    return attrs.evolve(outcome, steps=tuple(steps))


async def _then(job: _Job, item: Item, post: Outcome, step: str, user: User | None) -> Outcome:
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
    return await _step(job, key, _digest(request, user), request, user)


async def run(
    client: Client,
    items: Iterable[Item] | AsyncIterable[Item] | Source,
    *,
    journal: Journal | str | Path | None = None,
    concurrency: int = 100,
    retry_failed: bool = False,
    resend_unknown: bool = False,
    refused_after: int = REFUSALS_BEFORE_GIVING_UP,
) -> AsyncIterator[Outcome]:
    """Send every item through ``client`` and yield each ``Outcome`` as it ends (not in input order).

    ``journal`` (a path or a ``Journal``) records each step before and after it is sent, so running the
    same items again with it skips what is done, settles what was in flight, and sends again everything
    that did not end delivered, but for what X refused for its content (a 400, a duplicate): those stay
    failed unless ``retry_failed``. A post without text that may have been made, and that reading back
    could not settle, ends ``unknown`` and is not sent again unless ``resend_unknown``. A user whose
    requests are answered 401 ``refused_after`` times in a row is not sent for again in this run: their
    remaining items end ``CredentialsRefused``, unsent. At most ``concurrency`` items are under way at
    once; the rest are read only as room frees up.

    ``items`` may be a ``RedisQueue``: its lines are worked until the whole queue has drained, with
    every step's state kept in Redis (no journal), alongside any other process working it.

    Example::

        async for outcome in asyncx.bulk.run(client, items, journal="job.journal.sqlite"):
            print(outcome.key, outcome.status, outcome.tweet_id or outcome.error)
    """
    source = items if isinstance(items, Source) else None
    if source is not None and journal is not None:
        raise ValueError("a queue keeps its own records: give no journal with it")
    owned = isinstance(journal, (str, Path))
    store = Journal(journal) if isinstance(journal, (str, Path)) else journal
    job = _Job(
        client, source.journal if source is not None else store, retry_failed, resend_unknown, refused_after
    )
    results: asyncio.Queue[Outcome | BaseException | None] = asyncio.Queue(maxsize=concurrency)
    take = _taker(items)

    # A fixed set of workers, each taking the next item when it is free: no task per item, and never
    # more than ``concurrency`` items read ahead.
    async def worker() -> None:
        while (item := await take()) is not None:
            try:
                ended = await _process(job, item)
                if source is not None:
                    await source.ended(item, ended)
                outcome: Outcome | BaseException = ended
            except Exception as exc:  # not an XError: a bug or misuse; hand it to the caller
                outcome = exc
            await results.put(outcome)

    async def feed() -> None:
        try:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
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
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feeder
        if owned and store is not None:
            store.close()
        elif store is not None:
            store.flush()  # the outcomes still waiting for the next batch
