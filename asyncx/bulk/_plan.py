"""What a job would do, for ``asyncx post --dry-run``: sends by user and endpoint, the shortest time the
rate windows allow, and the cost at X's pay-per-use prices.

Prices change: they live here, in one place, and ``--price NAME=USD`` overrides them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from .._models import AddCollectionEntry, Bookmark, CreateTweet, CurateCollection, RateLimit
from .._ratelimit._rules import APP_PREFIX, resolve_limits
from ._runner import Item

__all__ = ["DEFAULT_PRICES", "Plan"]

#: US dollars per request at X's pay-per-use prices (2026): a post, a post with a URL, a bookmark.
DEFAULT_PRICES: Mapping[str, float] = {"post": 0.015, "post_with_url": 0.20, "bookmark": 0.005}

# A URL as X counts one for pricing: a scheme, or a www. host. (twitter-text finds bare domains too;
# this errs on the cheap side for those.)
_URL = re.compile(r"https?://|\bwww\.", re.IGNORECASE)


class Plan:
    """Counts what a job would send, line by line."""

    def __init__(self) -> None:
        self.sends: dict[tuple[str, str], int] = {}  # (user key, endpoint) -> requests
        self.kinds: dict[str, int] = dict.fromkeys(("post", "post_with_url", "bookmark", "collection"), 0)
        self.skipped = 0  # lines a journal says are over

    def add(self, item: Item) -> None:
        request = item.request
        if isinstance(request, CreateTweet):
            self._count(item.user.key, "create_tweet")
            self.kinds["post_with_url" if request.text and _URL.search(request.text) else "post"] += 1
            then = item.then
            if then is not None and then.bookmark_as is not None:
                self._count(then.bookmark_as.key, "bookmark")
                self.kinds["bookmark"] += 1
            if then is not None and then.collection is not None:
                self._count((then.collection_as or item.user).key, "add_collection_entry")
                self.kinds["collection"] += 1
        elif isinstance(request, Bookmark):
            self._count(item.user.key, "bookmark")
            self.kinds["bookmark"] += 1
        elif isinstance(request, (AddCollectionEntry, CurateCollection)):
            endpoint = (
                "add_collection_entry" if isinstance(request, AddCollectionEntry) else "curate_collection"
            )
            self._count(item.user.key, endpoint)
            self.kinds["collection"] += 1

    def _count(self, user: str, endpoint: str) -> None:
        self.sends[(user, endpoint)] = self.sends.get((user, endpoint), 0) + 1

    def seconds(self, limits: Mapping[str, RateLimit | Sequence[RateLimit]] | None) -> float | None:
        """The least time the rate windows allow for every send (configured or documented limits), or
        None when an endpoint's limit is published nowhere (collections): X tells it at the first answer."""
        windows = resolve_limits(limits)
        longest = 0.0
        totals: dict[str, int] = {}
        for (_, endpoint), count in self.sends.items():
            totals[endpoint] = totals.get(endpoint, 0) + count
            per_user = windows.get(endpoint, ())
            if not per_user:
                return None
            longest = max(longest, *(_span(count, w) for w in per_user))
        for endpoint, count in totals.items():
            for w in windows.get(APP_PREFIX + endpoint, ()):
                longest = max(longest, _span(count, w))
        return longest

    def cost(self, prices: Mapping[str, float]) -> float:
        return sum(prices.get(kind, 0.0) * count for kind, count in self.kinds.items())


def _span(count: int, window: RateLimit) -> float:
    """Seconds from the first to the last of ``count`` sends through one fixed window."""
    return (math.ceil(count / window.requests) - 1) * window.window_seconds
