"""Rate limits, in small parts with one job each.

::

    _answers    reading X's answer: limits, the server's clock, Retry-After, impossible values dropped
    _rules      which windows a budget needs, documented defaults, limits learned from headers
    _clock      the server's clock, narrowed by answers and a few probes
    _wakeups    one timer for every parked budget
    _queues     each budget's FIFO of waiting calls, and the ring sharing in-flight slots
    _counters   sent, waited, 429s, refusals
    _news       which budgets wait for the next answer in a window, and whether it already came
    _outbox     settles and refunds the store could not take, replayed once it answers
    _store      the Store interface every store goes through, and the types that cross it
    _memory     MemoryStore: the counts in this process, and the window rules
    _redis      RedisStore: the same rules in Redis, one Lua script per operation (lua/)
    _scheduler  the coordinator: budgets and their states, permits, granting, parking, answers
"""

from typing import TYPE_CHECKING, Any

from ._answers import HORIZON, LimitReading, ServerAnswer, read_answer, retry_after, server_date
from ._counters import BudgetStats
from ._memory import MemoryStore
from ._scheduler import Permit, Scheduler
from ._store import Answer, Store, Taken, WindowLike, WindowSpec, WindowView

if TYPE_CHECKING:
    from ._redis import RedisStore


def __getattr__(name: str) -> Any:
    # RedisStore loads on first use: most processes never share budgets, and it costs a few ms to load.
    if name == "RedisStore":
        from ._redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HORIZON",
    "Answer",
    "BudgetStats",
    "LimitReading",
    "MemoryStore",
    "Permit",
    "RedisStore",
    "Scheduler",
    "ServerAnswer",
    "Store",
    "Taken",
    "WindowLike",
    "WindowSpec",
    "WindowView",
    "read_answer",
    "retry_after",
    "server_date",
]
