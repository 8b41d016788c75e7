"""asyncx.testing: a fake X API server that runs in-process, for testing bots and jobs without X.

::

    async with FakeX(limits={"create_tweet": asyncx.RateLimit(5, 1.0)}) as fake:
        alice = fake.users.create("alice")
        async with fake.client() as client:
            await client.create_tweet(text="hi", user=alice.oauth1)
        assert [p.text for p in fake.posts_by(alice)] == ["hi"]
"""

from ._clock import ManualClock
from ._server import (
    DEFAULT_LIMITS,
    FakeMedia,
    FakeUser,
    FakeX,
    Faults,
    LogEntry,
    Post,
    ideal_makespan,
)

__all__ = [
    "DEFAULT_LIMITS",
    "FakeMedia",
    "FakeUser",
    "FakeX",
    "Faults",
    "LogEntry",
    "ManualClock",
    "Post",
    "ideal_makespan",
]
