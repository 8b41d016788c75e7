"""asyncx.bulk: run many posts, bookmarks and collection changes as one resumable, journaled job.

``run(client, items, journal=..., concurrency=...)`` is an async iterator of per-item ``Outcome``s;
the ``asyncx post`` command is a thin layer over it. ``RedisQueue`` spreads a job over many processes:
``run(client, queue)`` works it from each.
"""

from ._journal import Journal, JournalInUse
from ._queue import QueueCounts, RedisQueue
from ._runner import Item, Outcome, Then, run

__all__ = ["Item", "Journal", "JournalInUse", "Outcome", "QueueCounts", "RedisQueue", "Then", "run"]
