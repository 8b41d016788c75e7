"""``asyncx post --queue``, ``asyncx work`` and ``asyncx status``: a bulk job on a Redis Streams queue.

``post`` adds the jobs file's lines to the queue (each once, however often it runs), then works it;
``work`` joins from any machine with the same credentials; both run until every line has ended, and a
``--report`` from either covers the whole queue. ``status`` says where the lines are.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from .._client import DEFAULT_BASE_URL
from .._errors import StoreUnavailable
from ._command import (
    _client_for,
    _credentials,
    _on_signals,
    _Refusals,
    _Report,
    _Usage,
    note_reasons,
    print_reasons,
    run_command,
)
from ._jobs import Credentials, read_lines
from ._queue import QueueCounts, RedisQueue
from ._runner import run

__all__ = ["post_queued", "run_queue_command"]

#: Seconds between the status lines a worker prints.
_STATUS_EVERY = 5.0


def run_queue_command(args: argparse.Namespace) -> int:
    """Run ``asyncx work`` or ``asyncx status``; the exit code."""
    return run_command(_work_command if args.command == "work" else _status_command, args)


def _queue_for(args: argparse.Namespace, creds: Credentials | None, base: Any = None) -> RedisQueue:
    try:
        return RedisQueue(
            args.redis,
            args.queue,
            credentials=creds,
            base=base,
            cluster=args.redis_cluster,
            claim_after=getattr(args, "claim_after", 60.0),
            # Lines read ahead are held from other workers: no more than this worker can start.
            read_ahead=min(10, getattr(args, "concurrency", 10)),
        )
    except ValueError as exc:  # a queue name, or a Redis URL, that is not one
        raise _Usage(str(exc)) from None


async def post_queued(args: argparse.Namespace, creds: Credentials, console: Console) -> int:
    """Add the jobs file's lines to the queue, then work it until it drains. 0 when every line of the
    queue is done; 1 when some failed, are unknown or were invalid."""
    queue = _queue_for(args, creds, args.jobs.parent)
    try:
        report = _Report(args.report)
        try:
            added = await queue.enqueue(
                read_lines(args.jobs),
                retry_failed=args.retry_failed,
                resend_unknown=args.resend_unknown,
                on_problem=report.problem,
            )
        except StoreUnavailable as exc:
            raise _Usage(str(exc)) from None
        invalid = report.counts["invalid"]
        console.print(
            f"queue {args.queue!r}: {added} line(s) added, {invalid} invalid (left out); working it",
            markup=False,
        )
        code, counts = await _work(args, queue, creds, console, report)
    finally:
        await queue.aclose()
    if code:
        return code
    return 0 if counts.failed == counts.unknown == invalid == 0 else 1


async def _work_command(args: argparse.Namespace) -> int:
    creds = _credentials(args.credentials)
    queue = _queue_for(args, creds)
    try:
        code, _ = await _work(args, queue, creds, Console(stderr=True), _Report(args.report))
        return code
    finally:
        await queue.aclose()


async def _status_command(args: argparse.Namespace) -> int:
    queue = _queue_for(args, None)
    try:
        try:
            counts = await queue.counts()
        except StoreUnavailable as exc:
            raise _Usage(str(exc)) from None
    finally:
        await queue.aclose()
    if args.json:
        print(json.dumps(counts.to_dict()))
    else:
        _print_counts(f"queue {args.queue}", counts)
    return 0


async def _work(
    args: argparse.Namespace, queue: RedisQueue, creds: Credentials, console: Console, report: _Report
) -> tuple[int, QueueCounts]:
    """Work the queue until it drains (or a signal): ``(exit code, the queue's counts)``."""
    client, store = _client_for(args, creds, args.base_url or DEFAULT_BASE_URL)
    assert store is not None  # the queue's commands all take --redis
    mine: Counter[str] = Counter()
    reasons: dict[str, str] = {}
    refused = _Refusals(creds)
    start = time.monotonic()
    async with client:
        stopped = _on_signals(client, console, queue.stop)
        ticker = asyncio.get_running_loop().create_task(_tell(queue, console, mine))
        try:
            async for outcome in run(client, queue, concurrency=args.concurrency):
                mine[outcome.kind] += 1
                note_reasons(outcome, reasons)
                refused.count(outcome)
        except StoreUnavailable as exc:
            raise _Usage(
                f"{exc}; lines this worker held (if any) are taken over by other workers after "
                "--claim-after seconds"
            ) from None
        finally:
            ticker.cancel()
        if stopped.closing is not None:
            await stopped.closing
        counts = await queue.counts()
        async for entry in queue.lines():
            report.add(entry)
        ended = sum(mine.values())
        trips = queue.round_trips + store.round_trips
        summary: dict[str, Any] = {
            **counts.to_dict(),
            "this_worker": {"lines": ended, **mine},
            "seconds": round(time.monotonic() - start, 3),
            "redis_round_trips_per_line": round(trips / ended, 2) if ended else None,
            "reasons": reasons,
        }
        if refused.lines:
            summary["credentials_refused"] = refused.lines
        if stopped.signum is not None:
            summary["stopped_by"] = stopped.signum
        report.close(summary)
    _print_counts(f"queue {args.queue}", counts, mine)
    print_reasons(Console(), reasons)
    refused.tell(console)
    if stopped.signum is not None:
        console.print("stopped: this worker's lines not done went back to the queue")
        return 128 + stopped.signum, counts
    return 0, counts


async def _tell(queue: RedisQueue, console: Console, mine: Counter[str]) -> None:
    """A status line every few seconds: the whole queue, and this worker's part."""
    while True:
        await asyncio.sleep(_STATUS_EVERY)
        try:
            c = await queue.counts()
        except StoreUnavailable:
            continue
        console.print(
            f"queue {queue.name}: {c.queued} queued, {c.in_flight} in flight, {c.done} done, "
            f"{c.failed} failed, {c.unknown} unknown; this worker ended {sum(mine.values())}",
            markup=False,
            highlight=False,
        )


def _print_counts(title: str, counts: QueueCounts, mine: Counter[str] | None = None) -> None:
    table = Table(title=title, show_header=True)
    table.add_column("lines")
    table.add_column("count", justify="right")
    table.add_row("queued", str(counts.queued))
    table.add_row("in flight", str(counts.in_flight))
    table.add_row("done", str(counts.done))
    table.add_row("failed", str(counts.failed))
    if counts.retryable:
        table.add_row("  of which a rerun of asyncx post sends again", str(counts.retryable))
    table.add_row("unknown (may exist; see --resend-unknown)", str(counts.unknown))
    if mine is not None:
        table.add_row("ended by this worker", str(sum(mine.values())))
    Console().print(table)
