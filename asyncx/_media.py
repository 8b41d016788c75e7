"""What X takes as media: types recognised from a file's first bytes, the category each type goes in, and
each category's size limit. Everything here is checked before a byte is uploaded."""

from __future__ import annotations

from ._errors import ValidationError

__all__ = [
    "CATEGORY_TYPES",
    "ONE_SHOT",
    "SIZE_LIMITS",
    "category_for",
    "check_media",
    "sniff",
]

MIB = 1024 * 1024

#: The most bytes X takes per category (image 5 MiB, GIF 15 MiB, post video 8 GB, DM video 512 MiB).
SIZE_LIMITS = {
    "tweet_image": 5 * MIB,
    "dm_image": 5 * MIB,
    "tweet_gif": 15 * MIB,
    "dm_gif": 15 * MIB,
    "tweet_video": 8 * 1000**3,
    "amplify_video": 8 * 1000**3,
    "dm_video": 512 * MIB,
    "subtitles": 5 * MIB,
}

_IMAGES = frozenset({"image/jpeg", "image/png", "image/webp", "image/bmp"})
_VIDEOS = frozenset({"video/mp4", "video/quicktime"})
#: The media types each category takes.
CATEGORY_TYPES = {
    "tweet_image": _IMAGES,
    "dm_image": _IMAGES,
    "tweet_gif": frozenset({"image/gif"}),
    "dm_gif": frozenset({"image/gif"}),
    "tweet_video": _VIDEOS,
    "amplify_video": _VIDEOS,
    "dm_video": _VIDEOS,
    "subtitles": frozenset({"text/srt", "text/vtt"}),
}

#: Categories X takes in one request (``POST /2/media/upload``); everything else is uploaded in segments.
ONE_SHOT = frozenset({"tweet_image", "dm_image", "subtitles"})


def sniff(head: bytes) -> str | None:
    """The media type a file's first bytes show, or None when they show none X takes."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"BM") and len(head) >= 14:
        return "image/bmp"
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if head.lstrip(b"\xef\xbb\xbf").startswith(b"WEBVTT"):
        return "text/vtt"
    return None


def category_for(media_type: str) -> str:
    """The post category of a media type: images, GIFs and videos each have their own."""
    if media_type == "image/gif":
        return "tweet_gif"
    if media_type in _IMAGES:
        return "tweet_image"
    if media_type in _VIDEOS:
        return "tweet_video"
    if media_type in CATEGORY_TYPES["subtitles"]:
        return "subtitles"
    raise ValidationError(f"X takes no media of type {media_type!r}", field="media_type")


def check_media(media_type: str, media_category: str, size: int) -> None:
    """Refuse media X would refuse for its type, category or size."""
    takes = CATEGORY_TYPES.get(media_category)
    if takes is None:
        choices = ", ".join(sorted(CATEGORY_TYPES))
        raise ValidationError(f"must be one of {choices}, got {media_category!r}", field="media_category")
    if media_type not in takes:
        raise ValidationError(
            f"{media_category} takes {', '.join(sorted(takes))}, not {media_type!r}", field="media_type"
        )
    if size <= 0:
        raise ValidationError("the media is empty", field="source")
    limit = SIZE_LIMITS[media_category]
    if size > limit:
        raise ValidationError(
            f"{size:,} bytes is more than X takes for {media_category} ({limit:,})", field="source"
        )
