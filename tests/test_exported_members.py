"""The public surface is exactly what ``asyncx.__all__`` lists, sorted, and nothing private leaks."""

import asyncx

EXPECTED = [
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


def test_all_is_pinned_and_sorted() -> None:
    assert asyncx.__all__ == EXPECTED
    assert asyncx.__all__ == sorted(asyncx.__all__)


def test_every_exported_name_exists_and_is_public() -> None:
    for name in asyncx.__all__:
        assert hasattr(asyncx, name), name
    public = {n for n in vars(asyncx) if n.isidentifier() and not n.startswith("_")}
    # Submodules imported by the package show up as attributes; only the exported names are API.
    assert public - set(EXPECTED) <= {"testing", "bulk"}
