"""Media upload v2: one request for a small image, else initialize, append segments, finalize, wait for
processing; then alt text. An ``UploadSession`` records how far an upload got, so a crashed upload
resumes where it stopped while X still holds what was sent.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import attrs

from ._errors import MediaProcessingFailed, ValidationError
from ._media import ONE_SHOT, category_for, check_media, sniff
from ._models import (
    AppendUpload,
    FinalizeUpload,
    InitializeUpload,
    MediaInfo,
    MediaMetadata,
    MediaUpload,
    Request,
    UploadedMedia,
    UploadStatus,
)

__all__ = ["DEFAULT_SEGMENT", "MediaSource", "UploadSession", "file_fingerprint", "upload"]

#: Bytes per appended segment: X documents 5 MB, but its edge refuses some 5 MB segments (413/431)
#: and takes 1-2 MB ones.
DEFAULT_SEGMENT = 2_000_000
#: The largest segment X's servers take, and the most segments one upload may have.
MAX_SEGMENT, MAX_SEGMENTS = 8 * 1024 * 1024, 1000
#: A saved session this close to its expiry is started afresh: X might drop it mid-upload.
EXPIRY_MARGIN = 60.0

MediaSource = str | os.PathLike[str] | bytes | IO[bytes]
Send = Callable[[Request], Awaitable[Any]]


@attrs.frozen
class UploadSession:
    """How far a chunked upload got: ``segments_sent`` segments of ``segment_size`` bytes are held by X,
    and ``finalized`` says whether it was finalized. Save it (``attrs.asdict``) from the ``progress``
    callback and pass it back as ``resume=`` to go on after a crash, until ``expires_at`` (epoch seconds)."""

    media_id: str
    media_key: str | None
    expires_at: float
    media_type: str
    media_category: str
    total_bytes: int
    segment_size: int
    segments_sent: int = 0
    finalized: bool = False
    #: What the file was when the upload started (its size and a digest of samples of it): a file changed
    #: since is uploaded afresh, never finished onto the old one's segments.
    fingerprint: str | None = None

    @property
    def segments(self) -> int:
        """How many segments the whole upload takes."""
        return math.ceil(self.total_bytes / self.segment_size)


class _Source:
    """Bytes, a path or a seekable binary file, read one segment at a time so memory stays flat."""

    def __init__(self, source: MediaSource) -> None:
        self._data: bytes | None = None
        self._file: IO[bytes] | None = None
        self._owned = False
        if isinstance(source, bytes):
            self._data = source
            self.size = len(source)
        elif isinstance(source, str | os.PathLike):
            path = Path(source)
            if not path.is_file():
                raise ValidationError(f"no such file: {str(path)[:200]}", field="source")
            self._file, self._owned = path.open("rb"), True
            self.size = os.fstat(self._file.fileno()).st_size
        elif hasattr(source, "read") and hasattr(source, "seek") and source.seekable():
            self._file = source
            self.size = source.seek(0, os.SEEK_END)
        else:
            raise ValidationError("must be bytes, a path, or a seekable binary file", field="source")

    def fingerprint(self) -> str:
        """The size and a digest of the first and last 64 KiB and 16 samples between: cheap for a video of
        gigabytes, and an edit, a truncation or another file shows."""
        digest = hashlib.blake2b(digest_size=12)
        digest.update(self.read(0, 65536))
        for i in range(1, 17):
            digest.update(self.read(self.size * i // 17, 4096))
        digest.update(self.read(max(0, self.size - 65536), 65536))
        return f"{self.size}:{digest.hexdigest()}"

    def read(self, offset: int, length: int) -> bytes:
        if self._data is not None:
            return self._data[offset : offset + length]
        assert self._file is not None
        self._file.seek(offset)
        data = self._file.read(length)
        if not isinstance(data, bytes):
            raise ValidationError("must be opened in binary mode", field="source")
        return data

    def close(self) -> None:
        if self._owned and self._file is not None:
            self._file.close()


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """What a media file is now, as an ``UploadSession`` records it."""
    src = _Source(path)
    try:
        return src.fingerprint()
    finally:
        src.close()


async def _report(progress: Callable[[UploadSession], object] | None, session: UploadSession) -> None:
    if progress is not None:
        outcome = progress(session)
        if inspect.isawaitable(outcome):
            await outcome


def _segment_size(total: int, wanted: int) -> int:
    size = max(wanted, math.ceil(total / MAX_SEGMENTS))
    if size > MAX_SEGMENT:
        raise ValidationError(f"{total:,} bytes need more than {MAX_SEGMENTS} segments of 8 MiB", "source")
    return size


async def upload(
    send: Send,
    source: MediaSource,
    *,
    media_category: str | None,
    media_type: str | None,
    alt_text: str | None,
    progress: Callable[[UploadSession], object] | None,
    resume: UploadSession | None,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    segment_size: int = DEFAULT_SEGMENT,
) -> UploadedMedia:
    """Upload ``source`` with ``send`` (the client's, bound to one user) and return the media."""
    src = _Source(source)
    try:
        head = src.read(0, 64)
        kind = media_type or sniff(head)
        if kind is None:
            raise ValidationError("its first bytes show no media type X takes; give media_type", "media_type")
        category = media_category or category_for(kind)
        check_media(kind, category, src.size)
        if alt_text is not None:
            MediaMetadata("1", alt_text)  # checked now: nothing is sent for media whose alt text is bad
        if resume is None and category in ONE_SHOT:
            info: MediaInfo = await send(
                MediaUpload(media=src.read(0, src.size), media_category=category, media_type=kind)
            )
            expires_at = clock() + (info.expires_after_secs or 86_400)
        else:
            info, expires_at = await _chunked(
                send, src, kind, category, progress, resume, clock, segment_size
            )
        info = await _processed(send, info, sleep)
        if alt_text is not None:
            await send(MediaMetadata(info.id, alt_text))
        return UploadedMedia(info.id, info.media_key, expires_at, kind, category)
    finally:
        src.close()


async def _chunked(
    send: Send,
    src: _Source,
    kind: str,
    category: str,
    progress: Callable[[UploadSession], object] | None,
    resume: UploadSession | None,
    clock: Callable[[], float],
    segment_size: int,
) -> tuple[MediaInfo, float]:
    session = resume
    fingerprint = src.fingerprint()
    if session is not None and (
        session.total_bytes != src.size
        or session.media_type != kind
        or (session.fingerprint is not None and session.fingerprint != fingerprint)
        or clock() >= session.expires_at - EXPIRY_MARGIN
    ):
        session = None  # another file, or X may have dropped what was sent: start afresh
    if session is None:
        size = _segment_size(src.size, segment_size)
        started: MediaInfo = await send(
            InitializeUpload(media_type=kind, total_bytes=src.size, media_category=category)
        )
        session = UploadSession(
            started.id,
            started.media_key,
            clock() + (started.expires_after_secs or 86_400),
            kind,
            category,
            src.size,
            size,
            fingerprint=fingerprint,
        )
        await _report(progress, session)
    for index in range(session.segments_sent, session.segments):
        data = src.read(index * session.segment_size, session.segment_size)
        await send(AppendUpload(media_id=session.media_id, segment_index=index, media=data))
        del data
        session = attrs.evolve(session, segments_sent=index + 1)
        await _report(progress, session)
    if session.finalized:
        info: MediaInfo = await send(UploadStatus(session.media_id))
    else:
        info = await send(FinalizeUpload(session.media_id))
        session = attrs.evolve(session, finalized=True)
        await _report(progress, session)
    if info.media_key is None:
        info = attrs.evolve(info, media_key=session.media_key)
    return info, session.expires_at


async def _processed(send: Send, info: MediaInfo, sleep: Callable[[float], Awaitable[None]]) -> MediaInfo:
    """Wait out X's processing (video, GIF), asking when X says to; raise if it failed."""
    key = info.media_key
    while info.state in ("pending", "in_progress"):
        await sleep(max(1, info.check_after_secs or 1))
        info = await send(UploadStatus(info.id))
    if info.state == "failed":
        raise MediaProcessingFailed(info.id, info.error)
    return info if info.media_key is not None else attrs.evolve(info, media_key=key)
