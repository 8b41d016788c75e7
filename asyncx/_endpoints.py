"""What each endpoint needs: which users may call it, its wire form, and how to read its answer.

``endpoint_for(request)`` gives the ``Endpoint`` of a request class. ``prepare`` builds the body once
per call; signing happens per attempt, in the client.
"""

from __future__ import annotations

import json
import operator
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

import attrs

from ._auth import BearerUser, OAuth1User, User, form_encode, percent_encode
from ._convert import invalid_structure, structure, unstructure
from ._errors import MalformedResponse, ValidationError
from ._models import (
    AddCollectionEntry,
    AppendUpload,
    Bookmark,
    CollectionError,
    CollectionResult,
    CreateTweet,
    CurateCollection,
    FinalizeUpload,
    InitializeUpload,
    MediaInfo,
    MediaMetadata,
    MediaUpload,
    RateLimit,
    Request,
    Tweet,
    UploadStatus,
    UserTweets,
)

__all__ = ["ENDPOINTS", "ENDPOINT_NAMES", "Endpoint", "Prepared", "endpoint_for"]

R = TypeVar("R", bound=Request)
T = TypeVar("T")

_JSON = "application/json"
_DIGITS = re.compile(r"[0-9]{1,19}")
_FORM = "application/x-www-form-urlencoded"


@attrs.frozen
class Prepared:
    """A request's wire form before signing: the body is encoded once per call, not per attempt."""

    method: str
    url: str
    content_type: str
    body: bytes | None
    form: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Endpoint(Generic[R, T]):
    """One X endpoint, declared once in ``ENDPOINTS``: what the rate limits, the Redis keys and the
    client read of it. ``name`` is the coroutine's name, and so the key of its rate budgets."""

    name: str
    path: str
    users: tuple[type, ...]
    _body: Callable[[R], tuple[str, bytes | None, tuple[tuple[str, str], ...]]]
    _parse: Callable[[Any], T]
    _after_maybe_delivered: Callable[[T], T] | None = None
    method: str = "POST"
    #: Whether a 2xx may come without a body (a media segment appended): it then parses as ``{}``.
    empty_ok: bool = False
    #: One letter for the endpoint in Redis key names (Redis pays for every byte of every key).
    code: str = attrs.field(default="", kw_only=True)
    #: X's documented per-user windows, used until X's headers say otherwise (none: learned from X).
    limits: tuple[RateLimit, ...] = attrs.field(default=(), kw_only=True)
    #: X's documented app-wide windows, shared by every user of the app.
    app_limits: tuple[RateLimit, ...] = attrs.field(default=(), kw_only=True)

    def after_maybe_delivered(self, result: T) -> T:
        """The result of an attempt made after an earlier one may have been applied unanswered."""
        return self._after_maybe_delivered(result) if self._after_maybe_delivered is not None else result

    def check_user(self, user: User) -> None:
        """Refuse a user whose kind of auth this endpoint does not take, before anything is sent."""
        if not isinstance(user, self.users):
            wanted = " or ".join(
                "an OAuth 1.0a user" if u is OAuth1User else "an OAuth 2.0 user (BearerUser)"
                for u in self.users
            )
            raise ValidationError(f"{self.name} needs {wanted}, got {type(user).__name__}", field="user")

    def prepare(self, request: R, user: User, base_url: str) -> Prepared:
        content_type, body, form = self._body(request)
        if self.method == "GET":  # the pairs go in the query string, and are signed from there
            path = self.path.format(user_id=getattr(request, "user_id", ""))
            query = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in form)
            return Prepared("GET", f"{base_url}{path}?{query}", "", None, form)
        path = self.path.format(
            user_id=getattr(user, "user_id", ""), media_id=getattr(request, "media_id", "")
        )
        return Prepared("POST", base_url + path, content_type, body, form)

    def parse(self, data: Any, status: int = 200) -> T:
        """The result model for a success body; an ``APIError`` if the body is not what X documents."""
        try:
            return self._parse(data)
        except Exception as exc:
            if isinstance(exc, invalid_structure()):
                why = "a field's type"
            elif isinstance(exc, (KeyError, TypeError, ValueError, AttributeError)):
                why = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
            else:
                raise
            raise MalformedResponse(
                status, body=data, message=f"{self.name}: {status} with a body X does not send ({why})"
            ) from None


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _json_body(request: Request) -> tuple[str, bytes, tuple[tuple[str, str], ...]]:
    return _JSON, _json(unstructure(request)), ()


#: Every field of a post but its text, and their defaults: most posts set nothing else.
_NOT_TEXT = tuple(f for f in attrs.fields(CreateTweet) if f.name != "text")
_others = operator.attrgetter(*(f.name for f in _NOT_TEXT))
_DEFAULTS = tuple(f.default for f in _NOT_TEXT)


def _post_body(request: CreateTweet) -> tuple[str, bytes, tuple[tuple[str, str], ...]]:
    """A post's body; a text-only post's without the converter (and without importing cattrs)."""
    if _others(request) == _DEFAULTS:
        return _JSON, _json({} if request.text is None else {"text": request.text}), ()
    return _json_body(request)


def _bookmark_body(request: Bookmark) -> tuple[str, bytes, tuple[tuple[str, str], ...]]:
    return _JSON, _json({"tweet_id": request.tweet_id}), ()


def _collection_add_body(request: AddCollectionEntry) -> tuple[str, bytes, tuple[tuple[str, str], ...]]:
    form: list[tuple[str, str]] = [("id", request.id), ("tweet_id", request.tweet_id)]
    if request.relative_to is not None:
        form += [("relative_to", request.relative_to), ("above", "true" if request.above else "false")]
    return _FORM, form_encode(form), tuple(form)


#: What a read must show to tell a text-less post from another: its poll, media, quote and reply.
_READ_FIELDS = (
    ("tweet.fields", "attachments,created_at,referenced_tweets"),
    ("expansions", "attachments.poll_ids,attachments.media_keys"),
    ("poll.fields", "options"),
)


def _user_tweets_query(request: UserTweets) -> tuple[str, bytes | None, tuple[tuple[str, str], ...]]:
    pairs = [*_READ_FIELDS, ("max_results", str(request.max_results))]
    if request.start_time is not None:
        stamp = datetime.fromtimestamp(int(request.start_time), timezone.utc)
        pairs.append(("start_time", stamp.strftime("%Y-%m-%dT%H:%M:%SZ")))
    if request.since_id is not None:
        pairs.append(("since_id", request.since_id))
    return "", None, tuple(pairs)


def _multipart(parts: list[tuple[str, bytes, str | None]]) -> tuple[str, bytes]:
    """A ``multipart/form-data`` body of (name, value, filename) parts; a file part is sent as bytes."""
    boundary = secrets.token_hex(16)
    chunks: list[bytes] = []
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if filename:
            head += "Content-Type: application/octet-stream\r\n"
        chunks += [(head + "\r\n").encode(), value, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(chunks)


def _media_upload_body(request: MediaUpload) -> tuple[str, bytes, tuple[tuple[str, str], ...]]:
    content_type, body = _multipart(
        [
            ("media", request.media, "media"),
            ("media_category", request.media_category.encode(), None),
            ("media_type", request.media_type.encode(), None),
        ]
    )
    return content_type, body, ()


def _append_body(request: AppendUpload) -> tuple[str, bytes, tuple[tuple[str, str], ...]]:
    content_type, body = _multipart(
        [("segment_index", str(request.segment_index).encode(), None), ("media", request.media, "media")]
    )
    return content_type, body, ()


def _initialize_body(request: InitializeUpload) -> tuple[str, bytes, tuple[tuple[str, str], ...]]:
    data: dict[str, Any] = {
        "media_type": request.media_type,
        "total_bytes": request.total_bytes,
        "media_category": request.media_category,
    }
    if request.shared:
        data["shared"] = True
    if request.additional_owners:
        data["additional_owners"] = list(request.additional_owners)
    return _JSON, _json(data), ()


def _no_body(request: Request) -> tuple[str, bytes | None, tuple[tuple[str, str], ...]]:
    return "", None, ()


def _status_query(request: UploadStatus) -> tuple[str, bytes | None, tuple[tuple[str, str], ...]]:
    return "", None, (("command", "STATUS"), ("media_id", request.media_id))


def _metadata_body(request: MediaMetadata) -> tuple[str, bytes, tuple[tuple[str, str], ...]]:
    return _JSON, _json({"id": request.media_id, "metadata": {"alt_text": {"text": request.alt_text}}}), ()


def _media_info(data: Any) -> MediaInfo:
    """X's media answer; fields X may add later are ignored."""
    item = data["data"]
    media_id = item.get("id") or item.get("media_id_string") or item.get("media_id")
    if not isinstance(media_id, str | int) or not _DIGITS.fullmatch(str(media_id)):
        raise ValueError(f"the media id {str(media_id)[:40]!r} is not an id")
    processing = item.get("processing_info") or {}
    return MediaInfo(
        str(media_id),
        item.get("media_key"),
        item.get("expires_after_secs"),
        processing.get("state"),
        processing.get("check_after_secs"),
        processing.get("progress_percent"),
        processing.get("error"),
    )


def _ignored(data: Any) -> None:
    return None


def _posts(data: Any) -> tuple[Tweet, ...]:
    polls = {
        p["id"]: tuple(o["label"] for o in p.get("options", ()))
        for p in (data.get("includes") or {}).get("polls", ())
    }
    posts = []
    for item in data.get("data") or ():
        attachments = item.get("attachments") or {}
        refs = {r.get("type"): r.get("id") for r in item.get("referenced_tweets") or ()}
        options = next((polls[p] for p in attachments.get("poll_ids", ()) if p in polls), ())
        fields = {
            "id": item["id"],
            "text": item.get("text", ""),
            "created_at": item.get("created_at"),
            "poll_options": options,
            "media_keys": tuple(attachments.get("media_keys", ())),
            "quote_tweet_id": refs.get("quoted"),
            "in_reply_to_tweet_id": refs.get("replied_to"),
        }
        post = structure(fields, Tweet)
        if not _DIGITS.fullmatch(post.id):
            raise ValueError(f"the post id {post.id[:40]!r} is not an id")
        posts.append(post)
    return tuple(posts)


#: The fields of a created post's answer; an answer with just these is read without the converter.
_CREATED = frozenset({"id", "text", "edit_history_tweet_ids"})


def _tweet(data: Any) -> Tweet:
    errors = data.get("errors") or ()
    item = data["data"]
    if (
        not errors
        and type(item) is dict
        and item.keys() <= _CREATED
        and type(item.get("id")) is str
        and type(item.get("text")) is str
    ):
        tweet = Tweet(item["id"], item["text"])  # the answer to nearly every post: the common case, fast
    else:
        tweet = structure({**item, "errors": errors}, Tweet)
    if not _DIGITS.fullmatch(tweet.id):
        raise ValueError(f"the post id {tweet.id[:40]!r} is not an id")
    return tweet


def _bookmarked(data: Any) -> bool:
    return bool(data["data"]["bookmarked"])


def _collection_result(data: Any) -> CollectionResult:
    response = data.get("response") or {}
    errors = []
    for item in response.get("errors") or ():
        change: Mapping[str, Any] = item.get("change") or {}
        errors.append(
            CollectionError(
                str(change.get("op", "")), str(change.get("tweet_id", "")), str(item.get("reason", ""))
            )
        )
    return CollectionResult(errors=tuple(errors))


def _duplicates_applied(result: CollectionResult) -> CollectionResult:
    # After an unanswered attempt, "duplicate" means that attempt put the post in the collection.
    applied = tuple(e for e in result.errors if e.reason == "duplicate")
    errors = tuple(e for e in result.errors if e.reason != "duplicate")
    return CollectionResult(errors=errors, delivered_earlier=result.delivered_earlier + applied)


_EITHER = (OAuth1User, BearerUser)

_15_MIN = 900.0

#: The one registry of endpoints, by request class. Limits are X's documented defaults (per user, per 15
#: minutes unless said), https://docs.x.com/x-api/fundamentals/rate-limits; X's headers win over them.
ENDPOINTS: dict[type[Request], Endpoint[Any, Any]] = {
    # Media upload v2, per user per 15 minutes.
    MediaUpload: Endpoint(
        "media_upload",
        "/2/media/upload",
        _EITHER,
        _media_upload_body,
        _media_info,
        code="u",
        limits=(RateLimit(500, _15_MIN),),
    ),
    InitializeUpload: Endpoint(
        "media_initialize",
        "/2/media/upload/initialize",
        _EITHER,
        _initialize_body,
        _media_info,
        code="i",
        limits=(RateLimit(1875, _15_MIN),),
    ),
    AppendUpload: Endpoint(
        "media_append",
        "/2/media/upload/{media_id}/append",
        _EITHER,
        _append_body,
        _ignored,
        empty_ok=True,
        code="p",
        limits=(RateLimit(1875, _15_MIN),),
    ),
    FinalizeUpload: Endpoint(
        "media_finalize",
        "/2/media/upload/{media_id}/finalize",
        _EITHER,
        _no_body,
        _media_info,
        code="f",
        limits=(RateLimit(1875, _15_MIN),),
    ),
    UploadStatus: Endpoint(
        "media_status",
        "/2/media/upload",
        _EITHER,
        _status_query,
        _media_info,
        None,
        "GET",
        code="s",
        limits=(RateLimit(1000, _15_MIN),),
    ),
    MediaMetadata: Endpoint(
        "media_metadata",
        "/2/media/metadata",
        _EITHER,
        _metadata_body,
        _ignored,
        empty_ok=True,
        code="m",
        limits=(RateLimit(500, _15_MIN),),
    ),
    UserTweets: Endpoint(
        "user_tweets",
        "/2/users/{user_id}/tweets",
        (OAuth1User, BearerUser),
        _user_tweets_query,
        _posts,
        None,
        "GET",
        code="r",
        limits=(RateLimit(900, _15_MIN),),
    ),
    CreateTweet: Endpoint(
        "create_tweet",
        "/2/tweets",
        (OAuth1User, BearerUser),
        _post_body,
        _tweet,
        code="t",
        limits=(RateLimit(100, _15_MIN),),
        app_limits=(RateLimit(10_000, 86_400.0),),
    ),
    Bookmark: Endpoint(
        "bookmark",
        "/2/users/{user_id}/bookmarks",
        (BearerUser,),
        _bookmark_body,
        _bookmarked,
        code="b",
        limits=(RateLimit(50, _15_MIN),),
    ),
    # v1.1 collections: "rate limited", with no number published; learned from X's headers.
    AddCollectionEntry: Endpoint(
        "add_collection_entry",
        "/1.1/collections/entries/add.json",
        (OAuth1User,),
        _collection_add_body,
        _collection_result,
        _duplicates_applied,
        code="a",
    ),
    CurateCollection: Endpoint(
        "curate_collection",
        "/1.1/collections/entries/curate.json",
        (OAuth1User,),
        _json_body,
        _collection_result,
        _duplicates_applied,
        code="c",
    ),
}

#: Every endpoint's name, in the registry's order.
ENDPOINT_NAMES = tuple(endpoint.name for endpoint in ENDPOINTS.values())


def endpoint_for(request: Request) -> Endpoint[Any, Any]:
    try:
        return ENDPOINTS[type(request)]
    except KeyError:
        raise TypeError(f"not an asyncx request: {type(request).__name__}") from None
