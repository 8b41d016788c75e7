"""``asyncx.bulk.RedisQueue``: a bulk job's lines in a Redis stream, worked by any number of processes.

The lines go into a Redis Stream read through a consumer group (XADD, XREADGROUP, XACK, XAUTOCLAIM), so
every line goes to one worker; a worker that dies leaves its lines pending, and another claims them once
they have been idle ``claim_after`` seconds (live workers keep theirs fresh). Each line's record (its
digest, and for it and its ``then`` steps what the journal would hold: sending, done, failed...) lives
in a hash beside the stream, so no worker needs a journal of its own: a claimed line whose step was
recorded as sending is sent again as a call whose earlier attempt may have landed, exactly as a resumed
journal line is. Keys share the hash tag ``{q:NAME}``, so every script runs on one Cluster slot.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .._errors import StoreUnavailable
from .._ratelimit._redis import _redact, connect
from ._jobs import Credentials, LineKeys, LineProblem, parse_line
from ._journal import Record
from ._runner import Item, Outcome

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["QueueCounts", "RedisQueue"]

_GROUP = "workers"
#: Lines sent to Redis per enqueue script: big enough to cost few round trips, small enough to stay quick.
_ENQUEUE_BATCH = 500
#: How long the "lines are being added" mark outlives the enqueuer's last batch.
_ENQUEUING_TTL = 30.0
#: The idle time (ms) a line handed back by a stopped worker is given, so any worker claims it at once.
_HANDED_BACK = 1_000_000_000_000
#: Keys of a line's ``then`` steps: the line's key and these.
_STEP_SUFFIXES = (":bookmark", ":collection")


def _script(name: str) -> str:
    lua = resources.files("asyncx.bulk").joinpath("lua")
    return lua.joinpath(f"queue_{name}.lua").read_text(encoding="utf-8")


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


@attrs.frozen
class QueueCounts:
    """Where a queue's lines are: ``queued`` (not yet taken), ``in_flight`` (taken by a worker, not
    ended), and how those that ended, ended: ``done``, ``failed`` (refused for their content, or not
    done: ``retryable`` of them are sent again when the job is posted again) and ``unknown``."""

    queued: int
    in_flight: int
    done: int
    failed: int
    unknown: int
    retryable: int

    @property
    def ended(self) -> int:
        """Lines that have ended, however they ended."""
        return self.done + self.failed + self.unknown

    @property
    def drained(self) -> bool:
        """True once no line is queued or in flight: every line has ended."""
        return self.queued == 0 and self.in_flight == 0

    def to_dict(self) -> dict[str, int]:
        """The counts by name, as ``asyncx status --json`` prints them."""
        return attrs.asdict(self)


class _Batches:
    """Runs operations as few script calls: those that start in one turn of the event loop, or while
    the previous call is under way, go together."""

    def __init__(self, run: Callable[[list[Any]], Any]) -> None:
        self._run = run
        self._ops: list[Any] = []
        self._waiting: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, op: Any) -> None:
        self._ops.append(op)
        done = asyncio.get_running_loop().create_future()
        self._waiting.append(done)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush())
        await done

    async def _flush(self) -> None:
        """One call at a time: what arrives while one runs goes together in the next."""
        try:
            await asyncio.sleep(0)  # let the rest of this turn's operations join
            while self._ops:
                ops, self._ops = self._ops, []
                waiting, self._waiting = self._waiting, []
                try:
                    await self._run(ops)
                except Exception as exc:
                    for future in waiting:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for future in waiting:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._task = None


@attrs.define
class _Taken:
    """A line this worker holds: its stream entry and what it ended as, step by step."""

    id: str
    steps: dict[str, tuple[str, int, dict[str, Any]]] = attrs.Factory(dict)


class RedisQueue:
    """A job queue named ``name`` in the Redis at ``url`` (``cluster=True`` for a Redis Cluster).

    ``enqueue`` adds job lines (JSON, as in a jobs file) exactly once; ``asyncx.bulk.run(client, queue)``
    works it until every line has ended, from as many processes and machines as share the Redis, each
    with the same ``credentials`` (to resolve the lines' users; media paths are relative to ``base``).
    ``claim_after`` is how long a dead worker's lines wait before another takes them over.
    """

    def __init__(
        self,
        url: str,
        name: str,
        *,
        credentials: Credentials | None = None,
        base: str | Path | None = None,
        cluster: bool = False,
        prefix: str = "asyncx",
        claim_after: float = 60.0,
        read_ahead: int = 10,
    ) -> None:
        if not name or any(c in name for c in "{}\n"):
            raise ValueError("a queue name must be non-empty, without braces or newlines")
        if claim_after <= 0:
            raise ValueError("claim_after must be positive")
        self.name = name
        self._url = url
        self._redis: Redis = connect(url, cluster=cluster, timeout=10.0)
        self._cluster = cluster
        tag = f"{prefix}:{{q:{name}}}"
        self._stream, self._table, self._counts, self._enqueuing = (
            f"{tag}:s",
            f"{tag}:o",
            f"{tag}:c",
            f"{tag}:e",
        )
        self._credentials = credentials
        self._base = Path(base) if base is not None else None
        self.claim_after = claim_after
        self._read_ahead = read_ahead
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        scripts = {
            n: self._redis.register_script(_script(n)) for n in ("enqueue", "take", "sending", "ended")
        }
        self._enqueue_script: AsyncScript = scripts["enqueue"]
        self._take_script: AsyncScript = scripts["take"]
        self._sending = _Batches(self._send_batch)
        self._sending_script: AsyncScript = scripts["sending"]
        self._ended = _Batches(self._end_batch)
        self._ended_script: AsyncScript = scripts["ended"]
        self._held: dict[str, _Taken] = {}  # by line key: lines taken and not yet ended
        self._records: dict[str, dict[str, Any]] = {}  # their records (and their steps') as taken
        self._uploads: dict[str, dict[str, Any]] = {}
        self._stopping = False
        self._ready = False
        #: Redis calls this worker made (scripts, reads, heartbeats): for round trips per line.
        self.round_trips = 0

    def __repr__(self) -> str:
        return f"RedisQueue({_redact(self._url)!r}, {self.name!r})"

    # -- adding lines -------------------------------------------------------------------------------

    async def enqueue(
        self,
        lines: Iterable[tuple[int, str]],
        *,
        retry_failed: bool = False,
        resend_unknown: bool = False,
        on_problem: Callable[[LineProblem], None] | None = None,
    ) -> int:
        """Add job lines (``(line number, JSON text)``, as ``read_lines`` gives) that are not queued,
        in flight or ended yet; lines that ended not done go back (failed ones with ``retry_failed``,
        unknown ones with ``resend_unknown``). Lines are checked first: a bad one goes to
        ``on_problem``, not to the queue. Streamed in batches: memory stays flat. Returns how many
        were added."""
        if self._credentials is None:
            raise ValueError("enqueue needs the credentials, to check each line's user")
        await self._prepare()
        keys = LineKeys()
        added = 0
        batch: list[dict[str, Any]] = []
        for number, text in lines:
            parsed = parse_line(number, text, self._credentials, keys, self._base)
            if isinstance(parsed, LineProblem):
                if on_problem is not None:
                    on_problem(parsed)
                continue
            batch.append({"k": parsed.key, "d": parsed.digest, "n": number, "l": text})
            if len(batch) >= _ENQUEUE_BATCH:
                added += await self._enqueue_batch(batch, retry_failed, resend_unknown)
                batch = []
        if batch:
            added += await self._enqueue_batch(batch, retry_failed, resend_unknown)
        await self._call(self._redis.delete(self._enqueuing))
        return added

    async def _enqueue_batch(self, batch: list[dict[str, Any]], failed: bool, unknown: bool) -> int:
        await self._call(self._redis.set(self._enqueuing, self.consumer, px=int(_ENQUEUING_TTL * 1000)))
        args = _dumps({"lines": batch, "failed": failed, "unknown": unknown})
        keys = [self._stream, self._table, self._counts]
        return int(await self._call(self._enqueue_script(keys=keys, args=[args])))

    async def _prepare(self) -> None:
        """Make the consumer group (and the stream) if they do not exist yet."""
        if self._ready:
            return
        if self._cluster:
            await self._call(self._redis.initialize())
        try:
            await self._call(self._redis.xgroup_create(self._stream, _GROUP, id="0", mkstream=True))
        except StoreUnavailable as exc:
            if "BUSYGROUP" not in str(exc.__cause__ or exc):
                raise
        self._ready = True

    # -- where the lines are ------------------------------------------------------------------------

    async def counts(self) -> QueueCounts:
        """The whole queue's counts, whichever workers took its lines (all 0 for a queue never filled;
        asking makes nothing in Redis)."""
        left = int(await self._call(self._redis.xlen(self._stream)))
        try:
            pending = await self._call(self._redis.xpending(self._stream, _GROUP))
        except StoreUnavailable as exc:
            if "NOGROUP" not in str(exc.__cause__ or exc):
                raise
            pending = None
        in_flight = int(pending["pending"]) if pending else 0
        if in_flight:  # lines a stopped worker handed back wait for the next worker: queued
            back = await self._call(
                self._redis.xpending_range(self._stream, _GROUP, "-", "+", in_flight, idle=_HANDED_BACK // 10)
            )
            in_flight -= len(back)
        raw = await self._call(self._redis.hgetall(self._counts))
        ended = {k.decode(): int(v) for k, v in raw.items()}
        not_done = ended.get("not_done", 0)
        return QueueCounts(
            queued=max(0, left - in_flight),
            in_flight=in_flight,
            done=ended.get("done", 0),
            failed=ended.get("failed", 0) + not_done,
            unknown=ended.get("unknown", 0),
            retryable=not_done,
        )

    async def lines(self) -> AsyncIterator[dict[str, Any]]:
        """Every line's record, for a report of the whole queue: ``line``, ``key``, ``status`` (done,
        failed, not_done, unknown, or queued while it has not ended), and the outcome's fields."""
        cursor = 0
        while True:
            cursor, chunk = await self._call(self._redis.hscan(self._table, cursor, count=1000))
            records = {k.decode(): json.loads(v) for k, v in chunk.items()}
            steps = [k for k in records if not k.endswith(_STEP_SUFFIXES)]
            wanted = [k + s for k in steps for s in _STEP_SUFFIXES if k + s not in records]
            if wanted:
                values = await self._call(self._redis.hmget(self._table, wanted))
                records.update({k: json.loads(v) for k, v in zip(wanted, values, strict=True) if v})
            for key in steps:
                yield _entry(key, records)
            if cursor == 0:
                return

    # -- the runner's source: items, and a journal ------------------------------------------------

    def stop(self) -> None:
        """Take no more lines; lines not done because of the stop go back to the queue for others."""
        self._stopping = True

    def __aiter__(self) -> AsyncIterator[Item]:
        return self._items()

    async def _items(self) -> AsyncIterator[Item]:
        """This worker's lines until the whole queue has drained (or ``stop``)."""
        await self._prepare()
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat())
        pause, claimed_at, cursor = 0.05, 0.0, "0-0"
        try:
            while not self._stopping:
                claim = -1
                if time.monotonic() - claimed_at >= self.claim_after / 4 or cursor != "0-0":
                    claim, claimed_at = int(self.claim_after * 1000), time.monotonic()
                args = {
                    "group": _GROUP,
                    "consumer": self.consumer,
                    "count": self._read_ahead,
                    "claim": claim,
                    "cursor": cursor,
                }
                keys = [self._stream, self._table, self._enqueuing]
                reply = json.loads(await self._call(self._take_script(keys=keys, args=[_dumps(args)])))
                entries = reply.get("entries") or []
                cursor = reply["cursor"]  # not round yet: the next take goes on scanning
                if not entries:
                    if int(reply["left"]) == 0 and not int(reply["enqueuing"]):
                        return  # every line has ended
                    await asyncio.sleep(pause)  # others hold the rest, or more is being added
                    pause = min(2 * pause, 1.0)
                    continue
                pause = 0.05
                fresh = []
                for entry in entries:
                    if entry["k"] not in self._held:  # else ours already, under way here
                        # Held from now on, so the heartbeat keeps it ours until it is yielded.
                        self._held[entry["k"]] = _Taken(entry["id"])
                        fresh.append(entry)
                for i, entry in enumerate(fresh):
                    if self._stopping:  # taken, never started: claimable by others at once
                        for left in fresh[i:]:
                            await self._end(left["k"], None)
                        break
                    item = await self._item(entry)
                    if item is not None:
                        yield item
        finally:
            heartbeat.cancel()

    async def _item(self, entry: dict[str, Any]) -> Item | None:
        key, number = entry["k"], int(entry["n"])
        for suffix, raw in zip(("", *_STEP_SUFFIXES), entry["recs"], strict=True):
            if raw:
                self._records[key + suffix] = json.loads(raw)
        assert self._credentials is not None
        parsed = parse_line(number, entry["l"], self._credentials, None, self._base)
        if isinstance(parsed, LineProblem):  # this worker cannot make it (its credentials lack the user?)
            result = {"error": parsed.message, "error_type": "InvalidLine"}
            self._held[key].steps[key] = ("failed", 0, result)
            await self._end(key, "failed")
            return None
        return attrs.evolve(parsed, key=key, digest=entry["d"])

    async def _heartbeat(self) -> None:
        """Keep this worker's lines from looking abandoned: claim them again, to itself, every so often."""
        while True:
            await asyncio.sleep(self.claim_after / 3)
            ids: list[Any] = [t.id for t in self._held.values()]
            if ids:
                await self._call(self._redis.xclaim(self._stream, _GROUP, self.consumer, 0, ids, justid=True))

    async def ended(self, item: Item, outcome: Outcome) -> None:
        """Record how ``item`` ended and take it off the stream (a stop hands a line not done back)."""
        kind: str | None = outcome.kind
        if self._stopping and kind == "not_done":
            kind = None
        await self._end(item.key, kind)

    async def _end(self, key: str, kind: str | None) -> None:
        taken = self._held[key]
        await self._ended.add((key, kind, taken))
        self._held.pop(key, None)
        for suffix in ("", *_STEP_SUFFIXES):
            self._records.pop(key + suffix, None)

    async def _end_batch(self, ops: list[tuple[str, str | None, _Taken]]) -> None:
        items = []
        for key, kind, taken in ops:
            steps = [{"k": k, "s": s, "a": a, "r": r} for k, (s, a, r) in taken.steps.items()]
            item: dict[str, Any] = {"id": taken.id, "k": key, "steps": steps, "idle": _HANDED_BACK}
            if kind is not None:
                item["kind"] = kind
            items.append(item)
        args = _dumps({"group": _GROUP, "consumer": self.consumer, "items": items})
        keys = [self._stream, self._table, self._counts]
        await self._call(self._ended_script(keys=keys, args=[args]))

    # The journal's part, for ``asyncx.bulk.run``: what each step of a line this worker holds ended as.

    @property
    def journal(self) -> RedisQueue:
        """The queue itself: it keeps each step's state in Redis, where a journal would keep it."""
        return self

    def get(self, key: str, digest: str) -> Record | None:
        """The record of a step of a line this worker holds, as it was when the line was taken (None if
        it is new, or its line has changed since)."""
        record = self._records.get(key)
        if record is None or record.get("d") != digest or "s" not in record:
            return None
        return Record(record["s"], int(record.get("a", 0)), record.get("r") or {}, record.get("f"))

    async def sending_soon(self, key: str, digest: str) -> None:
        """Record in Redis that the step is about to be sent, batched with the others that start at the
        same time; returns once Redis has it."""
        now = time.time()
        await self._sending.add({"k": key, "d": digest, "now": now})
        record = self._records.setdefault(key, {})
        record.update({"d": digest, "s": "sending"})
        record.setdefault("f", now)

    async def _send_batch(self, ops: list[dict[str, Any]]) -> None:
        args = _dumps({"steps": [{"k": o["k"], "d": o["d"]} for o in ops], "now": ops[0]["now"]})
        await self._call(self._sending_script(keys=[self._table], args=[args]))

    def finish(self, key: str, state: str, attempts: int, result: dict[str, Any]) -> None:
        """Note how a step ended; it reaches Redis with its line's ending (``ended``)."""
        line = _line_of(key)
        taken = self._held.get(line)
        if taken is not None:
            taken.steps[key] = (state, attempts, result)
        record = self._records.setdefault(key, {})
        record.update({"s": state, "a": int(record.get("a", 0)) + attempts, "r": result})

    def upload(self, key: str) -> dict[str, Any] | None:
        """How far a media upload of this worker got, or None. Kept in this process only: a line another
        worker takes over uploads its media afresh."""
        return self._uploads.get(key)

    def save_upload(self, key: str, state: dict[str, Any]) -> None:
        """Keep how far a media upload got, for as long as this worker holds the line."""
        self._uploads[key] = state

    # -- plumbing ------------------------------------------------------------------------------------

    async def _call(self, work: Any) -> Any:
        self.round_trips += 1
        try:
            return await work
        except Exception as exc:
            raise StoreUnavailable(
                f"job queue {self.name!r} at {_redact(self._url)}: {exc.__class__.__name__}: {exc}"
            ) from exc

    async def aclose(self) -> None:
        """Close the connection to Redis."""
        await self._redis.aclose()


def _line_of(key: str) -> str:
    for suffix in _STEP_SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def _entry(key: str, records: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """A report entry for one line from its record and its steps' records."""
    record = records[key]
    ended = record.get("e")
    result = record.get("r") or {}
    entry: dict[str, Any] = {"line": record.get("n"), "key": key, "status": ended or "queued"}
    if record.get("s") == "sending" and not ended:
        entry["status"] = "in_flight"
    entry.update({k: v for k, v in result.items() if v is not None})
    if record.get("a"):
        entry["attempts"] = record["a"]
    steps = []
    for suffix in _STEP_SUFFIXES:
        step = records.get(key + suffix)
        if step is not None:
            steps.append({"key": key + suffix, "state": step.get("s"), **(step.get("r") or {})})
    if steps:
        entry["steps"] = steps
    return entry
