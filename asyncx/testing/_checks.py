"""FakeX's own checks of request bodies, written from X's documentation.

They share nothing with the SDK's models or validation: a test server that reused the client's code
would agree with the client's mistakes instead of catching them. Each check raises ``Invalid`` with the
JSON path X names and a message in X's wording where X's is known.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["COLLECTION_ID", "ID", "Invalid", "check_create_tweet", "check_id", "weighted_length"]

ID = re.compile(r"[0-9]{1,19}")
COLLECTION_ID = re.compile(r"custom-[0-9]{1,19}")
_REPLY_SETTINGS = ("following", "mentionedUsers", "subscribers", "verified")
_TOP = frozenset(
    {
        "text",
        "media",
        "poll",
        "reply",
        "quote_tweet_id",
        "reply_settings",
        "geo",
        "for_super_followers_only",
        "direct_message_deep_link",
        "card_uri",
        "community_id",
        "edit_options",
        "made_with_ai",
        "nullcast",
        "paid_partnership",
        "share_with_followers",
    }
)
_NESTED = {
    "media": frozenset({"media_ids", "tagged_user_ids"}),
    "poll": frozenset({"options", "duration_minutes", "reply_settings"}),
    "reply": frozenset({"in_reply_to_tweet_id", "exclude_reply_user_ids", "auto_populate_reply_metadata"}),
    "geo": frozenset({"place_id"}),
    "edit_options": frozenset({"previous_post_id"}),
}
#: Fields of which a post may carry one at most (X: "media, poll, quote_tweet_id and card_uri are
#: mutually exclusive").
_EXCLUSIVE = ("media", "poll", "quote_tweet_id", "card_uri")


class Invalid(Exception):
    """A body X would refuse: ``parameter`` is the JSON path, ``message`` X's words for it."""

    def __init__(self, parameter: str, message: str, value: object = None) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message
        self.value = value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _typed(path: str, value: object, expected: str) -> None:
    if _kind(value) != expected:
        raise Invalid(path, f"$.{path}: {_kind(value)} found, {expected} expected", value)


def check_id(path: str, value: object) -> str:
    """A numeric id as X writes them: a string of 1 to 19 digits."""
    _typed(path, value, "string")
    assert isinstance(value, str)
    if ID.fullmatch(value) is None:
        raise Invalid(path, f"$.{path}: does not match the regex pattern ^[0-9]{{1,19}}$", value)
    return value


def _ids(path: str, value: object, most: int) -> list[str]:
    _typed(path, value, "array")
    assert isinstance(value, list)
    if not 1 <= len(value) <= most:
        raise Invalid(path, f"$.{path}: must hold 1 to {most} items, found {len(value)}", value)
    return [check_id(f"{path}[{i}]", v) for i, v in enumerate(value)]


def weighted_length(text: str) -> int:
    """X's weighted length (twitter-text v3). ASCII with no dot holds no URL or emoji and weighs one a
    character; anything else is measured by twitter-text-parser, which runs X's conformance tests."""
    if text.isascii() and "." not in text:
        return len(text)
    # The loader only imports twitter-text-parser (without pkg_resources); the counting is that library's.
    from .._validation import _parse_tweet

    return int(_parse_tweet()(text).weightedLength)


def _object(path: str, value: object) -> Mapping[str, Any]:
    _typed(path, value, "object")
    assert isinstance(value, dict)
    for name in value:
        if name not in _NESTED.get(path, ()):
            raise Invalid(
                f"{path}.{name}",
                f"$.{path}.{name}: is not defined in the schema and the schema does not allow additional "
                "properties",
            )
    return value


def check_create_tweet(body: object) -> dict[str, Any]:
    """The fields of a ``POST /2/tweets`` body, checked as X's schema does; raises ``Invalid``."""
    if not isinstance(body, dict):
        raise Invalid("body", f"$: {_kind(body)} found, object expected")
    for name in body:
        if name not in _TOP:
            raise Invalid(
                name,
                f"$.{name}: is not defined in the schema and the schema does not allow additional properties",
            )
    post: dict[str, Any] = {}
    if "text" in body:
        _typed("text", body["text"], "string")
        post["text"] = body["text"]
    if "media" in body:
        media = _object("media", body["media"])
        if "media_ids" not in media:
            raise Invalid("media.media_ids", "$.media.media_ids: is missing but it is required")
        post["media_ids"] = _ids("media.media_ids", media["media_ids"], 4)
        if "tagged_user_ids" in media:
            _ids("media.tagged_user_ids", media["tagged_user_ids"], 10)
    if "poll" in body:
        poll = _object("poll", body["poll"])
        options = poll.get("options")
        _typed("poll.options", options, "array")
        assert isinstance(options, list)
        if not 2 <= len(options) <= 4:
            raise Invalid("poll.options", f"$.poll.options: must hold 2 to 4 items, found {len(options)}")
        for i, option in enumerate(options):
            _typed(f"poll.options[{i}]", option, "string")
            if not 1 <= len(option) <= 25:
                raise Invalid(f"poll.options[{i}]", f"$.poll.options[{i}]: must be 1 to 25 characters")
        minutes = poll.get("duration_minutes")
        _typed("poll.duration_minutes", minutes, "integer")
        assert isinstance(minutes, int)
        if not 5 <= minutes <= 10080:
            raise Invalid("poll.duration_minutes", "$.poll.duration_minutes: must be 5 to 10080")
        post["poll_options"] = list(options)
        post["poll_minutes"] = minutes
    if "reply" in body:
        reply = _object("reply", body["reply"])
        if "in_reply_to_tweet_id" not in reply:
            raise Invalid(
                "reply.in_reply_to_tweet_id", "$.reply.in_reply_to_tweet_id: is missing but it is required"
            )
        post["in_reply_to_tweet_id"] = check_id("reply.in_reply_to_tweet_id", reply["in_reply_to_tweet_id"])
        if "exclude_reply_user_ids" in reply:
            _ids("reply.exclude_reply_user_ids", reply["exclude_reply_user_ids"], 100)
    if "quote_tweet_id" in body:
        post["quote_tweet_id"] = check_id("quote_tweet_id", body["quote_tweet_id"])
    if "reply_settings" in body:
        setting = body["reply_settings"]
        _typed("reply_settings", setting, "string")
        if setting not in _REPLY_SETTINGS:
            raise Invalid(
                "reply_settings",
                f"$.reply_settings: does not have a value in the enumeration {list(_REPLY_SETTINGS)}",
            )
    if "geo" in body:
        geo = _object("geo", body["geo"])
        _typed("geo.place_id", geo.get("place_id"), "string")
    for flag in ("for_super_followers_only", "made_with_ai", "nullcast", "paid_partnership"):
        if flag in body:
            _typed(flag, body[flag], "boolean")
    for name in ("direct_message_deep_link", "card_uri", "community_id"):
        if name in body:
            _typed(name, body[name], "string")
    if "edit_options" in body:
        edit = _object("edit_options", body["edit_options"])
        check_id("edit_options.previous_post_id", edit.get("previous_post_id"))
    present = [name for name in _EXCLUSIVE if name in body]
    if len(present) > 1:
        raise Invalid(
            present[1], f"$.{present[0]} and $.{present[1]} are mutually exclusive: a post may have only one"
        )
    text = post.get("text")
    if text is not None and weighted_length(text) > 280:
        raise Invalid("text", "Your Tweet text is too long.")
    if not (text or present):
        raise Invalid("text", "Post text is empty: a post needs text, media, a poll, a card or a quote.")
    return post


# -- media ------------------------------------------------------------------------------------------------

_MIB = 1024 * 1024
#: X's documented limits per media category, in bytes.
MEDIA_LIMITS = {
    "tweet_image": 5 * _MIB,
    "dm_image": 5 * _MIB,
    "tweet_gif": 15 * _MIB,
    "dm_gif": 15 * _MIB,
    "tweet_video": 8 * 1000**3,
    "amplify_video": 8 * 1000**3,
    "dm_video": 512 * _MIB,
    "subtitles": 5 * _MIB,
}
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp")
_VIDEO_TYPES = ("video/mp4", "video/quicktime")
MEDIA_TYPES = {
    "tweet_image": _IMAGE_TYPES,
    "dm_image": _IMAGE_TYPES,
    "tweet_gif": ("image/gif",),
    "dm_gif": ("image/gif",),
    "tweet_video": _VIDEO_TYPES,
    "amplify_video": _VIDEO_TYPES,
    "dm_video": _VIDEO_TYPES,
    "subtitles": ("text/srt", "text/vtt"),
}
#: The largest appended segment X's servers take.
MAX_SEGMENT = 8 * _MIB


def check_media(media_type: object, category: object, size: object) -> None:
    """Raise ``Invalid`` unless X takes media of this type, category and size."""
    if category not in MEDIA_TYPES:
        raise Invalid("media_category", f"$.media_category: does not have a value in {sorted(MEDIA_TYPES)}")
    assert isinstance(category, str)
    if media_type not in MEDIA_TYPES[category]:
        raise Invalid("media_type", f"Unsupported media type {media_type!r} for category {category}.")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise Invalid("total_bytes", "$.total_bytes: must be a positive integer")
    if size > MEDIA_LIMITS[category]:
        raise Invalid(
            "total_bytes", f"File size exceeds {MEDIA_LIMITS[category]} bytes, the limit for {category}."
        )


def image_type(head: bytes) -> str | None:
    """The image type a one-shot upload's first bytes show (X reads the file, not what it is called)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None
