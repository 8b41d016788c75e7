"""The asyncx exception tree, and the one place X's error bodies are parsed.

::

    XError                       every one says ``maybe_delivered``: may this call have reached X?
    ├── ValidationError          bad input, raised before anything is sent or any budget spent
    ├── TransportError           connection, TLS or timeout failure (``retryable`` is false for TLS refusals)
    │   └── DeadlineExceeded     the call's ``deadline`` passed before it ended
    ├── StoreUnavailable         the shared rate-limit store cannot be reached
    ├── DeliveryUnknown          a post without text may have been made, and reading back could not tell
    ├── MediaProcessingFailed    X could not process an uploaded video or GIF
    ├── UsageError               misuse: a closed session, a call from another event loop
    │   └── ClientClosed         the client is closed, or was closed while this call was open
    └── APIError                 X answered with an error: ``status``, ``problem``, ``errors``, ``headers``
        ├── MalformedResponse    a success status whose body is not what X documents (no usable id)
        ├── Unauthorized         401
        ├── Forbidden            403
        │   └── DuplicateContent         a post with the same text already exists
        │       └── AlreadyPosted        ...and it is ours: an earlier, unanswered attempt of this call
        ├── NotFound             404
        ├── RateLimited          429, or a wait for budget longer than ``max_wait``; ``retry_at`` when known
        └── ServerError          5xx

``maybe_delivered`` is the one name for "an attempt of this call may have reached X": the request was
written and no answer came, the answer timed out, or X failed with a 5xx. Once true for a call it stays
true, whatever later attempts answer, and every error the call raises carries it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "APIError",
    "AlreadyPosted",
    "ClientClosed",
    "DeadlineExceeded",
    "DeliveryUnknown",
    "DuplicateContent",
    "ErrorDetail",
    "FieldError",
    "Forbidden",
    "MalformedResponse",
    "MediaProcessingFailed",
    "NotFound",
    "Problem",
    "RateLimited",
    "ServerError",
    "StoreUnavailable",
    "TransportError",
    "Unauthorized",
    "UsageError",
    "ValidationError",
    "XError",
]


class XError(Exception):
    """Root of every error asyncx raises about a request.

    ``maybe_delivered`` is true when an attempt of the call may have reached X (for a post: it may
    exist). It is set by the client on every error a call raises.
    """

    maybe_delivered: bool = False

    def __init__(self, *args: object) -> None:
        # A server can answer with a detail of any length: what is shown, logged or stored is cut.
        super().__init__(*(cut(arg) if isinstance(arg, str) else arg for arg in args))


#: The most characters of a server's text an error message carries (a 50 MB ``detail`` is cut to this).
MAX_MESSAGE = 1000


def cut(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text``, or its first ``limit`` characters and a note of how many more there were; printable as
    UTF-8 whatever a server sent."""
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    # A lone surrogate (JSON allows "\udc00") cannot be printed or logged as UTF-8: it becomes "?".
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


@attrs.frozen
class FieldError:
    """One bad field of a request: its dotted path and what is wrong with it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ValidationError(XError, ValueError):
    """A request is invalid; raised before anything is sent and before any rate budget is spent.

    Every bad field is reported at once in ``errors``; ``field`` names the first.
    """

    def __init__(self, errors: Sequence[FieldError] | FieldError | str, field: str | None = None) -> None:
        if isinstance(errors, str):
            errors = [FieldError(field or "request", errors)]
        elif isinstance(errors, FieldError):
            errors = [errors]
        self.errors: tuple[FieldError, ...] = tuple(errors)
        self.field: str = self.errors[0].field if self.errors else (field or "request")
        super().__init__("; ".join(str(e) for e in self.errors) or "invalid request")


class TransportError(XError):
    """The request could not be completed at the HTTP level (connection, TLS, timeout).

    ``maybe_delivered`` is true when the request may have reached X (the connection broke after it was
    written, or the answer timed out): for a post, its outcome is then unknown. ``retryable`` is false
    for failures another attempt cannot mend, such as a certificate that does not verify.
    """

    def __init__(self, message: str, *, maybe_delivered: bool, retryable: bool = True) -> None:
        super().__init__(message)
        self.maybe_delivered = maybe_delivered
        self.retryable = retryable


class DeadlineExceeded(TransportError):
    """The call's ``deadline`` (seconds for the whole call, every attempt and wait included) passed
    before it ended. ``maybe_delivered`` says whether an attempt may have reached X."""

    def __init__(self, message: str) -> None:
        super().__init__(message, maybe_delivered=False, retryable=False)


class DeliveryUnknown(XError):
    """An attempt of a post without text may have reached X, and reading the user's posts back could not
    settle whether it did (no read access, say). It is not sent again blindly: that could post it twice.
    """

    maybe_delivered = True


class MediaProcessingFailed(XError):
    """X took the media but could not process it (a corrupt or unsupported video, say); the media id is
    unusable. ``error`` is X's description, with ``name`` and ``message`` when it gave them."""

    def __init__(self, media_id: str, error: Mapping[str, Any] | None) -> None:
        self.media_id = media_id
        self.error = dict(error or {})
        why = self.error.get("message") or self.error.get("name") or "no reason given"
        super().__init__(f"X could not process media {media_id}: {why}")


class UsageError(XError, RuntimeError):
    """The client was used in a way that cannot work: a session closed under it, a call from an event
    loop other than the one the client runs on. Nothing was sent."""


class ClientClosed(UsageError):
    """The client is closed, or was closed while this call waited, backed off or was in flight.

    ``maybe_delivered`` says whether the call may have reached X before the close ended it.
    """


class StoreUnavailable(XError):
    """The rate-limit store (Redis) could not be reached; nothing was sent."""


@attrs.frozen
class Problem:
    """An RFC 7807 problem body from the v2 API."""

    type: str = "about:blank"
    title: str = ""
    detail: str = ""
    status: int | None = None

    @property
    def kind(self) -> str:
        """The last path segment of ``type`` (``rate-limit-exceeded``), whichever host X used."""
        return self.type.rstrip("/").rsplit("/", 1)[-1]


@attrs.frozen
class ErrorDetail:
    """One entry of an ``errors`` list: v1.1's ``{code, message}`` or v2's ``{message, parameters}``."""

    message: str = ""
    code: int | None = None
    parameters: Mapping[str, Any] | None = None


class APIError(XError):
    """X answered with an error status.

    ``status`` is the HTTP status, ``problem`` the parsed v2 problem body (or ``None``), ``errors`` the
    parsed ``errors`` list (v1.1 codes or v2 details), ``headers`` the response headers and ``body`` the
    decoded JSON body.
    """

    def __init__(
        self,
        status: int,
        *,
        problem: Problem | None = None,
        errors: Sequence[ErrorDetail] = (),
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        message: str | None = None,
    ) -> None:
        self.status = status
        self.problem = problem
        self.errors: tuple[ErrorDetail, ...] = tuple(errors)
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.body = body
        super().__init__(message or self._describe())

    @property
    def codes(self) -> tuple[int, ...]:
        """The v1.1 error codes in the body, e.g. ``(187,)`` for a duplicate status."""
        return tuple(e.code for e in self.errors if e.code is not None)

    def _describe(self) -> str:
        parts = [str(self.status)]
        if self.problem is not None:
            parts.append(self.problem.title or self.problem.kind)
            if self.problem.detail:
                parts.append(self.problem.detail)
        parts.extend(f"[{e.code}] {e.message}" if e.code is not None else e.message for e in self.errors)
        return ": ".join(p for p in parts if p)


class Unauthorized(APIError):
    """401: the credentials were refused (bad or expired token, bad signature, clock skew)."""


class Forbidden(APIError):
    """403: the user or app may not do this."""


class DuplicateContent(Forbidden):
    """403: X already has a post with this text from this user."""


class AlreadyPosted(DuplicateContent):
    """A retry was refused as a duplicate of this call's own earlier attempt: the post was delivered.

    ``text`` is the post's text and ``attempts`` how many attempts the call made. X does not say the
    id of the earlier post, and asyncx never invents one.
    """

    maybe_delivered = True

    def __init__(self, status: int, *, text: str | None = None, attempts: int = 0, **kwargs: Any) -> None:
        self.text = text
        self.attempts = attempts
        super().__init__(status, **kwargs)


class MalformedResponse(APIError):
    """X answered with a success status, but the body lacks what X documents (a post's id, say).

    The request was accepted, so ``maybe_delivered`` is true: for a post, it exists, its id unknown.
    """

    maybe_delivered = True


class NotFound(APIError):
    """404: the post, user or collection does not exist."""


class RateLimited(APIError):
    """429, or a wait for rate budget that would exceed ``max_wait``.

    ``retry_at`` is the local ``time.time()`` at which budget is expected back, when known.
    """

    def __init__(self, status: int = 429, *, retry_at: float | None = None, **kwargs: Any) -> None:
        self.retry_at = retry_at
        super().__init__(status, **kwargs)


class ServerError(APIError):
    """5xx: X failed; the request may or may not have taken effect."""


_BY_STATUS: dict[int, type[APIError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound, 429: RateLimited}

#: v1.1 error codes that mean "duplicate status".
_DUPLICATE_CODES = frozenset({187})


def _parse_errors(raw: Any) -> tuple[ErrorDetail, ...]:
    if not isinstance(raw, list):
        return ()
    out = []
    for item in raw:
        if isinstance(item, Mapping):
            code = item.get("code")
            params = item.get("parameters")
            out.append(
                ErrorDetail(
                    message=cut(str(item.get("message") or item.get("detail") or "")),
                    code=code if isinstance(code, int) else None,
                    parameters=params if isinstance(params, Mapping) else None,
                )
            )
    return tuple(out)


def _parse_problem(body: Any) -> Problem | None:
    if not isinstance(body, Mapping) or not ("title" in body or "type" in body or "detail" in body):
        return None
    status = body.get("status")
    return Problem(
        type=cut(str(body.get("type") or "about:blank")),
        title=cut(str(body.get("title") or "")),
        detail=cut(str(body.get("detail") or "")),
        status=status if isinstance(status, int) else None,
    )


def is_duplicate(problem: Problem | None, errors: Sequence[ErrorDetail]) -> bool:
    """Whether an error body says "duplicate content" (v2 detail text or v1.1 code 187)."""
    if problem is not None and "duplicate" in problem.detail.lower():
        return True
    return any(e.code in _DUPLICATE_CODES for e in errors)


def error_from_response(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    *,
    retry_at: float | None = None,
) -> APIError:
    """Build the typed error for an error response whose JSON body is already decoded."""
    problem = _parse_problem(body)
    errors = _parse_errors(body.get("errors") if isinstance(body, Mapping) else None)
    kwargs: dict[str, Any] = {"problem": problem, "errors": errors, "headers": headers, "body": body}
    if status == 429 or (problem is not None and problem.kind == "rate-limit-exceeded"):
        return RateLimited(status, retry_at=retry_at, **kwargs)
    if status >= 500:
        return ServerError(status, **kwargs)
    cls = _BY_STATUS.get(status, APIError)
    if cls is Forbidden and is_duplicate(problem, errors):
        cls = DuplicateContent
    return cls(status, **kwargs)
