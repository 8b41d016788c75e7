"""asyncx: an async-first SDK for the X (Twitter) API.

It never earns an avoidable 429, never posts twice and never loses a post.
"""

import typing as _typing

from ._auth import BearerUser, OAuth1User
from ._client import Client
from ._delivery import Attempt
from ._errors import (
    AlreadyPosted,
    APIError,
    ClientClosed,
    DeadlineExceeded,
    DeliveryUnknown,
    DuplicateContent,
    ErrorDetail,
    FieldError,
    Forbidden,
    MalformedResponse,
    MediaProcessingFailed,
    NotFound,
    Problem,
    RateLimited,
    ServerError,
    StoreUnavailable,
    TransportError,
    Unauthorized,
    UsageError,
    ValidationError,
    XError,
)
from ._models import (
    AddCollectionEntry,
    Bookmark,
    CollectionChange,
    CollectionError,
    CollectionResult,
    CreateTweet,
    CurateCollection,
    EditOptions,
    Geo,
    Media,
    Poll,
    RateLimit,
    Reply,
    Tweet,
    UploadedMedia,
    UserTweets,
)
from ._ratelimit import (
    Answer,
    BudgetStats,
    MemoryStore,
    Store,
    Taken,
    WindowLike,
    WindowSpec,
    WindowView,
)
from ._retry import RetryPolicy
from ._transport import MockTransport, Response, Timeouts, WireRequest
from ._upload import UploadSession
from ._validation import weighted_length
from ._version import __version__

if _typing.TYPE_CHECKING:
    from ._ratelimit import RedisStore


__all__ = [
    "APIError",
    "AddCollectionEntry",
    "AlreadyPosted",
    "Answer",
    "Attempt",
    "BearerUser",
    "Bookmark",
    "BudgetStats",
    "Client",
    "ClientClosed",
    "CollectionChange",
    "CollectionError",
    "CollectionResult",
    "CreateTweet",
    "CurateCollection",
    "DeadlineExceeded",
    "DeliveryUnknown",
    "DuplicateContent",
    "EditOptions",
    "ErrorDetail",
    "FieldError",
    "Forbidden",
    "Geo",
    "MalformedResponse",
    "Media",
    "MediaProcessingFailed",
    "MemoryStore",
    "MockTransport",
    "NotFound",
    "OAuth1User",
    "Poll",
    "Problem",
    "RateLimit",
    "RateLimited",
    "RedisStore",
    "Reply",
    "Response",
    "RetryPolicy",
    "ServerError",
    "Store",
    "StoreUnavailable",
    "Taken",
    "Timeouts",
    "TransportError",
    "Tweet",
    "Unauthorized",
    "UploadSession",
    "UploadedMedia",
    "UsageError",
    "UserTweets",
    "ValidationError",
    "WindowLike",
    "WindowSpec",
    "WindowView",
    "WireRequest",
    "XError",
    "__version__",
    "weighted_length",
]


def __getattr__(name: str) -> _typing.Any:
    # RedisStore (and the redis client behind it) loads on first use: most processes never share budgets.
    if name == "RedisStore":
        from ._ratelimit._redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
