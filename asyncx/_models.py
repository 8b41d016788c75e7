"""Frozen attrs classes for requests, their nested parts, results and configuration.

Request classes validate themselves when built: an instance that exists is valid, so ``Client.send``
never sends a bad one. Nested parts accept their own class or a plain dict of the same shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from . import _validation as v
from ._errors import FieldError
from ._media import SIZE_LIMITS

__all__ = [
    "AddCollectionEntry",
    "Bookmark",
    "CollectionChange",
    "CollectionError",
    "CollectionResult",
    "CreateTweet",
    "CurateCollection",
    "EditOptions",
    "Geo",
    "Media",
    "Poll",
    "RateLimit",
    "Reply",
    "Request",
    "Tweet",
    "UserTweets",
]

_Ids = Iterable[str | int]
_Dict = Mapping[str, Any]


# Named converters: each accepts what callers may pass and leaves bad values for the checks to report.
def _id(value: str | int) -> str:
    return v.to_id(value)  # type: ignore[return-value]


def _opt_id(value: str | int | None) -> str | None:
    return v.to_id(value)  # type: ignore[return-value]


def _ids(value: _Ids) -> tuple[str, ...]:
    return v.to_tuple(v.to_id)(value)  # type: ignore[return-value]


def _strs(value: Iterable[str]) -> tuple[str, ...]:
    return v.to_tuple()(value)  # type: ignore[return-value]


@attrs.frozen
class RateLimit:
    """A fixed window: at most ``requests`` sends per ``window_seconds``, all returned at its reset."""

    requests: int
    window_seconds: float

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        v.check_range(errors, "requests", self.requests, 1, 10**9)
        v.check_seconds(errors, "window_seconds", self.window_seconds)
        v.raise_if(errors)


# -- nested parts of a post -------------------------------------------------------------------------


@attrs.frozen
class Reply:
    """Makes a post a reply to ``in_reply_to_tweet_id``."""

    in_reply_to_tweet_id: str = attrs.field(converter=_id)
    exclude_reply_user_ids: tuple[str, ...] = attrs.field(default=(), converter=_ids)

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        v.check_id(errors, "in_reply_to_tweet_id", self.in_reply_to_tweet_id)
        v.check_ids(errors, "exclude_reply_user_ids", self.exclude_reply_user_ids, 0, 10**6)
        v.raise_if(errors)


@attrs.frozen
class Media:
    """Attaches 1 to 4 uploaded media to a post, optionally tagging users in them."""

    media_ids: tuple[str, ...] = attrs.field(converter=_ids)
    tagged_user_ids: tuple[str, ...] = attrs.field(default=(), converter=_ids)

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        v.check_ids(errors, "media_ids", self.media_ids, 1, 4)
        v.check_ids(errors, "tagged_user_ids", self.tagged_user_ids, 0, 10)
        v.raise_if(errors)


@attrs.frozen
class EditOptions:
    """Makes a post an edit of ``previous_post_id`` (within X's edit window)."""

    previous_post_id: str = attrs.field(converter=_id)

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        v.check_id(errors, "previous_post_id", self.previous_post_id)
        v.raise_if(errors)


@attrs.frozen
class Poll:
    """A poll of 2 to 4 options of 1 to 25 characters, open for 5 to 10080 minutes."""

    options: tuple[str, ...] = attrs.field(converter=_strs)
    duration_minutes: int

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        if not isinstance(self.options, tuple) or not 2 <= len(self.options) <= 4:
            errors.append(FieldError("options", f"must be a list of 2 to 4 options, got {self.options!r}"))
        else:
            for i, option in enumerate(self.options):
                v.check_plain(errors, f"options[{i}]", option, 25)
        v.check_range(errors, "duration_minutes", self.duration_minutes, 5, 10080)
        v.raise_if(errors)


@attrs.frozen
class Geo:
    """Tags a post with a place."""

    place_id: str

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        v.check_place_id(errors, "place_id", self.place_id)
        v.raise_if(errors)


_to_reply, _to_media, _to_poll, _to_geo = v.nested(Reply), v.nested(Media), v.nested(Poll), v.nested(Geo)
_to_edit = v.nested(EditOptions)


def _edit(value: EditOptions | _Dict | None) -> EditOptions | None:
    return _to_edit(value)  # type: ignore[return-value]


def _reply(value: Reply | _Dict | None) -> Reply | None:
    return _to_reply(value)  # type: ignore[return-value]


def _media(value: Media | _Dict | None) -> Media | None:
    return _to_media(value)  # type: ignore[return-value]


def _poll(value: Poll | _Dict | None) -> Poll | None:
    return _to_poll(value)  # type: ignore[return-value]


def _geo(value: Geo | _Dict | None) -> Geo | None:
    return _to_geo(value)  # type: ignore[return-value]


# -- requests -----------------------------------------------------------------------------------------


class Request:
    """Base of the request classes that ``Client.send`` accepts."""

    __slots__ = ()


_POST_FLAGS = (
    "for_super_followers_only",
    "made_with_ai",
    "nullcast",
    "paid_partnership",
    "share_with_followers",
)
_POST_PARTS = ("reply", "media", "poll", "geo", "edit_options")
#: What a post may carry one of at most: X says media, a poll, a quote and a card exclude each other.
_ATTACHMENTS = ("media", "poll", "quote_tweet_id", "card_uri")


@attrs.frozen(kw_only=True)
class CreateTweet(Request):
    """``POST /2/tweets``: create a post. Every body field of the endpoint is a keyword here."""

    text: str | None = None
    quote_tweet_id: str | None = attrs.field(default=None, converter=_opt_id)
    for_super_followers_only: bool = False
    reply: Reply | None = attrs.field(default=None, converter=_reply)
    media: Media | None = attrs.field(default=None, converter=_media)
    poll: Poll | None = attrs.field(default=None, converter=_poll)
    reply_settings: str | None = None
    geo: Geo | None = attrs.field(default=None, converter=_geo)
    direct_message_deep_link: str | None = None
    card_uri: str | None = None
    community_id: str | None = attrs.field(default=None, converter=_opt_id)
    edit_options: EditOptions | None = attrs.field(default=None, converter=_edit)
    made_with_ai: bool = False
    nullcast: bool = False
    paid_partnership: bool = False
    share_with_followers: bool = False

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        if self.text is not None:
            v.check_text(errors, "text", self.text)
        if self.quote_tweet_id is not None:
            v.check_id(errors, "quote_tweet_id", self.quote_tweet_id)
        if self.community_id is not None:
            v.check_id(errors, "community_id", self.community_id)
        if self.card_uri is not None:
            v.check_plain(errors, "card_uri", self.card_uri, 1000)
        # Inline checks: this runs for every post, and most fields are at their defaults.
        for flag in _POST_FLAGS:
            value = getattr(self, flag)
            if value is not False and value is not True:
                v.check_bool(errors, flag, value)
        for name in _POST_PARTS:
            value = getattr(self, name)
            if value is not None:
                v.check_nested(errors, name, value)
        if self.reply_settings is not None:
            v.check_choice(errors, "reply_settings", self.reply_settings, v.REPLY_SETTINGS)
        link = self.direct_message_deep_link
        if link is not None and v.check_plain(errors, "direct_message_deep_link", link, 2048):
            assert isinstance(link, str)
            if not link.startswith("https://") or any(c.isspace() for c in link):
                errors.append(FieldError("direct_message_deep_link", "must be an https:// link"))
        attached = [n for n in _ATTACHMENTS if getattr(self, n) is not None]
        if len(attached) > 1:
            errors.append(FieldError(attached[1], f"{' and '.join(attached)} cannot be used together"))
        if self.text is None and not attached:
            errors.append(FieldError("text", "a post needs text, media, a poll, a card or a quote"))
        v.raise_if(errors)


@attrs.frozen(kw_only=True)
class UserTweets(Request):
    """``GET /2/users/:id/tweets``: a user's posts, newest first, made at or after ``start_time``
    (epoch seconds) or after ``since_id``. asyncx reads them to settle whether a post whose answer was
    lost was made."""

    user_id: str = attrs.field(converter=_id)
    start_time: float | None = None
    since_id: str | None = attrs.field(default=None, converter=_opt_id)
    max_results: int = 100

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        v.check_id(errors, "user_id", self.user_id)
        if self.since_id is not None:
            v.check_id(errors, "since_id", self.since_id)
        if self.start_time is not None:
            v.check_seconds(errors, "start_time", self.start_time)
        v.check_range(errors, "max_results", self.max_results, 5, 100)
        v.raise_if(errors)


@attrs.frozen
class Bookmark(Request):
    """``POST /2/users/:id/bookmarks``: bookmark a post for the (OAuth 2.0) user sending it."""

    tweet_id: str = attrs.field(converter=_id)

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        v.check_id(errors, "tweet_id", self.tweet_id)
        v.raise_if(errors)


@attrs.frozen
class AddCollectionEntry(Request):
    """``POST 1.1 collections/entries/add``: put a post into a collection (OAuth 1.0a).

    With ``relative_to``, the post goes just above (or below) that entry.
    """

    id: str
    tweet_id: str = attrs.field(converter=_id)
    relative_to: str | None = attrs.field(default=None, converter=_opt_id)
    above: bool = True

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        v.check_collection_id(errors, "id", self.id)
        v.check_id(errors, "tweet_id", self.tweet_id)
        if self.relative_to is not None:
            v.check_id(errors, "relative_to", self.relative_to)
        v.check_bool(errors, "above", self.above)
        v.raise_if(errors)


@attrs.frozen
class CollectionChange:
    """One change of a curate request: ``op`` is ``add`` or ``remove``."""

    op: str
    tweet_id: str = attrs.field(converter=_id)

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        v.check_choice(errors, "op", self.op, v.CURATE_OPS)
        v.check_id(errors, "tweet_id", self.tweet_id)
        v.raise_if(errors)


_to_change = v.nested(CollectionChange, optional=False)


def _changes(value: Iterable[CollectionChange | _Dict]) -> tuple[CollectionChange, ...]:
    return v.to_tuple(_to_change)(value)  # type: ignore[return-value]


@attrs.frozen
class CurateCollection(Request):
    """``POST 1.1 collections/entries/curate``: 1 to 100 adds and removes in one request (OAuth 1.0a)."""

    id: str
    changes: tuple[CollectionChange, ...] = attrs.field(converter=_changes)

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        v.check_collection_id(errors, "id", self.id)
        if not isinstance(self.changes, tuple) or not 1 <= len(self.changes) <= 100:
            count = len(self.changes) if isinstance(self.changes, tuple) else type(self.changes).__name__
            errors.append(FieldError("changes", f"must hold 1 to 100 changes, got {count}"))
        else:
            for i, change in enumerate(self.changes):
                v.check_nested(errors, f"changes[{i}]", change)
        v.raise_if(errors)


# -- results --------------------------------------------------------------------------------------


@attrs.frozen
class Tweet:
    """A post, created or read. ``errors`` holds any partial errors X returned beside a created one.

    Read posts (``Client.user_tweets``) also carry when they were made (``created_at``, X's ISO form) and
    what a post without text holds: poll options, media keys, the quoted and the replied-to post's id.
    """

    id: str
    text: str
    errors: tuple[Mapping[str, Any], ...] = ()
    created_at: str | None = None
    poll_options: tuple[str, ...] = ()
    media_keys: tuple[str, ...] = ()
    quote_tweet_id: str | None = None
    in_reply_to_tweet_id: str | None = None


@attrs.frozen
class CollectionError:
    """A change X did not apply, and why (``duplicate``, ``not_found``, ...)."""

    op: str
    tweet_id: str
    reason: str


@attrs.frozen
class CollectionResult:
    """The outcome of a collection add or curate: X answers 200 and lists the changes it refused.

    ``delivered_earlier`` holds the changes refused as ``duplicate`` after an earlier attempt of the same
    call went unanswered: they were applied by that attempt.
    """

    errors: tuple[CollectionError, ...] = ()
    delivered_earlier: tuple[CollectionError, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every change was applied."""
        return not self.errors


# -- media upload (v2) --------------------------------------------------------------------------------

#: The media categories X takes: the category decides X's size limit and whether X processes it
#: (listed once, with their limits, in ``_media``).
MEDIA_CATEGORIES = frozenset(SIZE_LIMITS)


@attrs.frozen(kw_only=True)
class MediaUpload(Request):
    """``POST /2/media/upload``: a small image (or subtitles) in one request."""

    media: bytes = attrs.field(repr=False)
    media_category: str
    media_type: str

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        if not isinstance(self.media, bytes) or not self.media:
            errors.append(FieldError("media", "must be non-empty bytes"))
        v.check_choice(errors, "media_category", self.media_category, MEDIA_CATEGORIES)
        v.check_plain(errors, "media_type", self.media_type, 100)
        v.raise_if(errors)


@attrs.frozen(kw_only=True)
class InitializeUpload(Request):
    """``POST /2/media/upload/initialize``: start a chunked upload of ``total_bytes``."""

    media_type: str
    total_bytes: int
    media_category: str
    shared: bool = False
    additional_owners: tuple[str, ...] = attrs.field(default=(), converter=_ids)

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        v.check_plain(errors, "media_type", self.media_type, 100)
        v.check_range(errors, "total_bytes", self.total_bytes, 1, 2**40)
        v.check_choice(errors, "media_category", self.media_category, MEDIA_CATEGORIES)
        v.check_bool(errors, "shared", self.shared)
        v.check_ids(errors, "additional_owners", self.additional_owners, 0, 100)
        v.raise_if(errors)


@attrs.frozen(kw_only=True)
class AppendUpload(Request):
    """``POST /2/media/upload/{id}/append``: one segment (0 to 999). X keeps one segment per index, so
    sending the same segment again is harmless."""

    media_id: str = attrs.field(converter=_id)
    segment_index: int
    media: bytes = attrs.field(repr=False)

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        v.check_id(errors, "media_id", self.media_id)
        v.check_range(errors, "segment_index", self.segment_index, 0, 999)
        if not isinstance(self.media, bytes) or not self.media:
            errors.append(FieldError("media", "must be non-empty bytes"))
        v.raise_if(errors)


@attrs.frozen
class _MediaRequest(Request):
    """A request about one uploaded media id."""

    media_id: str = attrs.field(converter=_id)

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        v.check_id(errors, "media_id", self.media_id)
        v.raise_if(errors)


@attrs.frozen
class FinalizeUpload(_MediaRequest):
    """``POST /2/media/upload/{id}/finalize``: every segment is sent; X may now process the media."""


@attrs.frozen
class UploadStatus(_MediaRequest):
    """``GET /2/media/upload?command=STATUS``: how processing goes."""


@attrs.frozen
class MediaMetadata(Request):
    """``POST /2/media/metadata``: alt text (1 to 1,000 characters) for uploaded media."""

    media_id: str = attrs.field(converter=_id)
    alt_text: str

    def __attrs_post_init__(self) -> None:
        errors: list[FieldError] = []
        v.check_id(errors, "media_id", self.media_id)
        v.check_plain(errors, "alt_text", self.alt_text, 1000)
        v.raise_if(errors)


@attrs.frozen
class MediaInfo:
    """X's answer about uploaded media: its id and key, seconds until it expires, and processing.

    ``state`` is None when X does no processing, else ``pending``, ``in_progress``, ``succeeded`` or
    ``failed`` (with ``error``); ``check_after_secs`` says when to ask again.
    """

    id: str
    media_key: str | None = None
    expires_after_secs: int | None = None
    state: str | None = None
    check_after_secs: int | None = None
    progress_percent: int | None = None
    error: Mapping[str, Any] | None = None


@attrs.frozen
class UploadedMedia:
    """Media X holds and a post may attach (``media={"media_ids": [m.id]}``) until ``expires_at``
    (epoch seconds, this machine's clock)."""

    id: str
    media_key: str | None
    expires_at: float
    media_type: str
    media_category: str
