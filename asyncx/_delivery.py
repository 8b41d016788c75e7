"""One call across all its attempts, and the one idea that needs care: an attempt that may have landed.

A post has three outcomes: created, refused, or unknown (the request was written and no answer came, the
answer timed out, or X failed with a 5xx). Once any attempt of a call may have reached X, the call is
``maybe_delivered`` for good: a later "duplicate" answer then means that attempt created the post
(``AlreadyPosted``), and every error the call raises says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from ._auth import User
from ._endpoints import Endpoint, Prepared
from ._errors import (
    AlreadyPosted,
    DuplicateContent,
    MalformedResponse,
    ServerError,
    TransportError,
    XError,
)
from ._models import CreateTweet, Request, Tweet

__all__ = ["Attempt", "Call", "OnAttempt", "made_by", "may_have_landed"]


@attrs.frozen
class Attempt:
    """What ``on_attempt`` sees just before an attempt of a call is written to X.

    ``number`` counts from 1; ``maybe_delivered`` says whether an earlier attempt may have reached X.
    """

    number: int
    maybe_delivered: bool


#: Called (synchronously) just before each attempt goes out: a journal records it there.
OnAttempt = Callable[[Attempt], None]


def may_have_landed(exc: BaseException) -> bool:
    """Whether a failed attempt may still have reached X and taken effect."""
    if isinstance(exc, TransportError):
        return exc.maybe_delivered
    return isinstance(exc, (ServerError, MalformedResponse))


class Call:
    """One call of ``Client.send``: its request, user and deadline, and what its attempts learned."""

    __slots__ = (
        "attempts",
        "deadline",
        "endpoint",
        "maybe_delivered",
        "offset",
        "on_attempt",
        "prepared",
        "request",
        "token",
        "user",
        "waited",
        "writing",
        "written_at",
    )

    def __init__(
        self,
        endpoint: Endpoint[Any, Any],
        request: Request,
        prepared: Prepared,
        user: User,
        deadline: float | None,
        maybe_delivered: bool,
        on_attempt: OnAttempt | None,
        written_at: float | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.request = request
        self.prepared = prepared
        self.user = user
        self.deadline = deadline
        self.maybe_delivered = maybe_delivered
        self.on_attempt = on_attempt
        self.attempts = 0
        self.writing = False  # an attempt is on the wire now
        self.waited = False  # the last attempt queued for rate budget before it went out
        self.token: str | None = None  # the OAuth 2.0 access token the last attempt was signed with
        self.offset = 0.0  # the clock offset the last OAuth 1.0a attempt was signed with
        #: When the first and the last attempt went out (epoch seconds), as far as this call knows.
        self.written_at: tuple[float, float] | None = (written_at, written_at) if written_at else None

    def writes(self, now: float) -> None:
        """An attempt is about to be written."""
        self.written_at = (now if self.written_at is None else self.written_at[0], now)
        self.attempts += 1
        self.writing = True
        if self.on_attempt is not None:
            self.on_attempt(Attempt(self.attempts, self.maybe_delivered))

    def reads_back(self) -> bool:
        """Whether a lost answer is settled by reading the user's posts: a post with no text, which has
        no "duplicate content" check to fall back on."""
        return self.maybe_delivered and isinstance(self.request, CreateTweet) and self.request.text is None

    def answered(self) -> None:
        """The attempt on the wire got an HTTP answer."""
        self.writing = False

    def failed(self, exc: BaseException) -> BaseException:
        """Note what a failed attempt says of delivery; returns the error the call should raise."""
        self.writing = False
        if may_have_landed(exc):
            self.maybe_delivered = True
        elif (
            self.maybe_delivered
            and isinstance(exc, DuplicateContent)
            and isinstance(self.request, CreateTweet)
        ):
            return AlreadyPosted(
                exc.status,
                text=self.request.text,
                attempts=self.attempts,
                problem=exc.problem,
                errors=exc.errors,
                headers=exc.headers,
                body=exc.body,
                message=f"delivered by an earlier unanswered attempt ({self.attempts} attempts)",
            )
        return exc

    def mark(self, exc: XError) -> XError:
        """Stamp the call's delivery state on an error it raises."""
        if self.maybe_delivered or self.writing:  # AlreadyPosted and MalformedResponse say so themselves
            exc.maybe_delivered = True
        return exc


def made_by(request: CreateTweet, post: Tweet) -> bool:
    """Whether ``post``, read back, is what ``request`` (a post without text) would have made: the same
    poll, media, quoted post and replied-to post, and nothing else of them."""
    poll = request.poll.options if request.poll else ()
    media = request.media.media_ids if request.media else ()
    reply = request.reply.in_reply_to_tweet_id if request.reply else None
    return (
        post.poll_options == poll
        and tuple(key.rpartition("_")[2] for key in post.media_keys) == media
        and post.quote_tweet_id == request.quote_tweet_id
        and post.in_reply_to_tweet_id == reply
    )
