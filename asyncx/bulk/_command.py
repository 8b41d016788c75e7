"""``asyncx post JOBS.jsonl``: a bulk job from a jobs file, journaled, with progress, a report and a summary.

``asyncx._cli`` parses the command line and imports this module only when a command runs, so ``--help``
loads none of it (rich, the client, SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from .._auth import BearerUser
from .._client import DEFAULT_BASE_URL, Client
from .._errors import ValidationError, XError, cut
from .._models import RateLimit
from .._ratelimit._redis import RedisStore
from .._transport import AiohttpTransport, Timeouts, WireRequest
from ._jobs import (
    Credentials,
    LineKeys,
    LineProblem,
    UserCredentials,
    load_credentials,
    old_digest,
    parse_line,
    read_lines,
    scan_users,
)
from ._journal import Journal, JournalInUse
from ._plan import DEFAULT_PRICES, Plan
from ._runner import Item, Outcome, run

__all__ = ["run_post"]

#: The sandbox's short windows: a newcomer sees waiting within seconds, and the job ends within a minute.
SANDBOX_LIMITS = {
    "create_tweet": RateLimit(5, 10.0),
    "bookmark": RateLimit(5, 10.0),
    "add_collection_entry": RateLimit(10, 10.0),
    "curate_collection": RateLimit(10, 10.0),
}


class _Usage(Exception):
    """Bad usage: reported in one line, exit code 2."""


def run_post(args: argparse.Namespace) -> int:
    """Run ``asyncx post`` with parsed arguments; its exit code."""
    return run_command(_post, args)


def run_command(
    command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]], args: argparse.Namespace
) -> int:
    """Run a command's coroutine; bad usage, an interrupt and I/O failures end in one line."""
    try:
        return asyncio.run(command(args))
    except _Usage as exc:
        print(f"asyncx: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("asyncx: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (OSError, sqlite3.Error) as exc:  # the journal's disk, a report path, a jobs file gone
        print(f"asyncx: {_io_message(exc)}; nothing more was sent", file=sys.stderr)
        return 1


def _io_message(exc: OSError | sqlite3.Error) -> str:
    """An I/O failure in words: what failed and where, without a traceback."""
    if isinstance(exc, sqlite3.Error):
        return f"the journal failed: {exc}"
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


class _Report:
    """Keeps the counts and the ``--report`` file (``{"lines": [...], "summary": {...}}``).

    Entries go to a scratch file as they come (memory stays flat), and ``flush`` replaces the report
    atomically: whatever stops the job, the report is valid JSON at every moment.
    """

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._scratch: IO[str] | None = None
        if path is not None:
            # Lives as long as the report; closed in close().
            self._scratch = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        #: ``not_done``: lines a rerun sends (not sent for a stop, refused credentials, X unreachable...);
        #: ``failed``: refused by X for their content; ``unknown``: may exist, not settled.
        self.counts = {
            "done": 0,
            "not_done": 0,
            "failed": 0,
            "unknown": 0,
            "invalid": 0,
            "resumed": 0,
            "delivered_earlier": 0,
        }
        self.errors: dict[str, int] = {}
        #: The first message seen for each kind of error: what "why not" means, in X's or asyncx's words.
        self.reasons: dict[str, str] = {}
        self.numbers: dict[str, int] = {}  # line numbers of the items under way, by key
        self.flush({"running": True})

    def add(self, entry: dict[str, Any]) -> None:
        if self._scratch is not None:
            self._scratch.write(json.dumps(entry) + "\n")

    def outcome(self, outcome: Outcome) -> None:
        self.counts[outcome.kind] += 1
        self.counts["resumed"] += outcome.resumed
        self.counts["delivered_earlier"] += outcome.delivered_earlier
        for o in (outcome, *outcome.steps):
            if o.status == "failed":
                kind = o.error_type or "Error"
                self.errors[kind] = self.errors.get(kind, 0) + 1
        note_reasons(outcome, self.reasons)
        self.add({"line": self.numbers.pop(outcome.key, None), **outcome.to_dict()})

    def problem(self, problem: LineProblem) -> None:
        self.counts["invalid"] += 1
        self.add({"line": problem.line, "status": "invalid", "error": problem.message})

    def flush(self, summary: dict[str, Any]) -> None:
        """Write the report so far to a file beside it, then move it over the report in one step."""
        if self._path is None or self._scratch is None:
            return
        scratch = self._scratch
        scratch.flush()
        scratch.seek(0)
        partial = self._path.with_name(self._path.name + ".partial")
        with partial.open("w", encoding="utf-8") as out:
            out.write('{"lines": [')
            for i, line in enumerate(scratch):
                out.write(("\n" if i == 0 else ",\n") + line.rstrip("\n"))
            out.write("\n],\n" + json.dumps({"summary": summary})[1:] + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, self._path)
        scratch.seek(0, os.SEEK_END)

    def close(self, summary: dict[str, Any]) -> None:
        self.flush(summary)
        if self._scratch is not None:
            self._scratch.close()


async def _post(args: argparse.Namespace) -> int:
    if not args.jobs.is_file():
        raise _Usage(f"no jobs file at {args.jobs}")
    total, per_user = scan_users(args.jobs)
    console = Console(stderr=True)
    if args.queue is not None and not args.dry_run:
        if args.redis is None:
            raise _Usage("--queue needs --redis URL: the queue lives in Redis")
        if args.sandbox:
            raise _Usage(
                "--queue needs an X every worker reaches: give --base-url (a FakeX served with "
                "python -m asyncx.testing will do), not --sandbox"
            )
        if args.journal is not None:
            raise _Usage("--queue keeps every line's state in Redis: give no --journal")
        from ._queued import post_queued

        return await post_queued(args, _credentials(args.credentials), console)
    async with contextlib.AsyncExitStack() as stack:
        journal = None
        if not args.dry_run:  # a rehearsal only reads the journal, if there is one
            try:
                journal = Journal(_journal_path(args))
            except JournalInUse as exc:
                raise _Usage(f"{exc}; two runs on one journal would send its lines twice") from None
            stack.callback(journal.close)
        if args.sandbox:
            from ..testing import FakeX  # only the sandbox needs the fake server

            # The fake keeps its state beside the journal, so a stopped sandbox job resumes as against X.
            state = _journal_path(args).with_suffix(".fake.json")
            resumed = state.is_file()
            kept = None if args.dry_run else state
            fake = await stack.enter_async_context(FakeX(limits=SANDBOX_LIMITS, state=kept))
            creds = _sandbox_credentials(fake, per_user)
            base_url = fake.base_url
            how = f"resumed from {state}" if resumed else f"its state kept in {state}"
            if args.dry_run:
                how = "a rehearsal: its saved state is left as it is"
            console.print(
                f"[bold]sandbox[/]: a fake X at {base_url} with {len(per_user)} made-up users ({how})",
                highlight=False,
            )
        else:
            creds = _credentials(args.credentials)
            base_url = args.base_url or DEFAULT_BASE_URL
        missing = sorted(name for name in per_user if name not in creds.users)
        for name in missing:
            console.print(
                f"[red]user {name!r} has no credentials[/]: its {per_user[name]} line(s) will be skipped"
            )
        if journal is None:
            return await _dry_run(args, creds, console, base_url)
        if journal.keyed_by_line_number:
            moved = journal.migrate_line_numbers(_identities(args.jobs, creds))
            console.print(f"journal {journal.path}: re-keyed {moved} line(s) by what they are, not where")
        _restore_tokens(creds, journal)
        client, _ = _client_for(args, creds, base_url)
        await stack.enter_async_context(client)
        return await _run(args, client, creds, journal, total, per_user, console)
    return 0  # pragma: no cover - the context manager always returns above


def _client_for(
    args: argparse.Namespace, creds: Credentials, base_url: str
) -> tuple[Client, RedisStore | None]:
    """The job's client (and its store): its rate-limit overrides, and budgets (and tokens) shared
    through ``--redis``."""
    try:
        limits = _rate_limits(args.rate_limit)
        store = RedisStore(args.redis, cluster=args.redis_cluster) if args.redis else None
        client = Client(
            creds.consumer_key,
            creds.consumer_secret,
            base_url=base_url,
            rate_limits=limits,
            store=store,
            proxy=args.proxy,
            ca_bundle=args.ca_bundle,
        )
        return client, store
    except (ValidationError, ValueError) as exc:  # ValueError: a Redis URL that is not one
        raise _Usage(str(exc)) from None


def _identities(jobs: Path, creds: Credentials) -> Iterator[tuple[int, str, str, str]]:
    """For a journal keyed by line number: each line's old digest, new key and new digest."""
    keys = LineKeys()
    for number, text in read_lines(jobs):
        parsed = parse_line(number, text, creds, keys, jobs.parent)
        if not isinstance(parsed, LineProblem):
            yield number, old_digest(text), parsed.key, parsed.digest


def _journal_path(args: argparse.Namespace) -> Path:
    """``--journal``, or beside the jobs file (a sandbox run has a journal of its own)."""
    if args.journal is not None:
        return Path(args.journal)
    jobs: Path = args.jobs
    return jobs.with_suffix(".sandbox.journal.sqlite" if args.sandbox else ".journal.sqlite")


def _rate_limits(specs: list[str]) -> dict[str, list[RateLimit]] | None:
    """``NAME=REQUESTS/SECONDS`` options as ``Client(rate_limits=...)``; a repeated name gets both windows."""
    limits: dict[str, list[RateLimit]] = {}
    for spec in specs:
        name, _, value = spec.partition("=")
        requests, _, seconds = value.partition("/")
        try:
            limits.setdefault(name.strip(), []).append(RateLimit(int(requests), float(seconds)))
        except ValueError:
            raise _Usage(f"--rate-limit {spec!r}: expected NAME=REQUESTS/SECONDS") from None
    return limits or None


def _credentials(path: Path | None) -> Credentials:
    if path is not None and not path.is_file():
        raise _Usage(f"no credentials file at {path}")
    try:
        return load_credentials(path)
    except (ValueError, ValidationError, OSError) as exc:
        raise _Usage(f"bad credentials: {exc}") from None


def _sandbox_credentials(fake: Any, per_user: dict[str, int]) -> Credentials:
    users = {}
    for name in per_user:
        made = fake.users.get(name) or fake.users.create(name)
        users[name] = UserCredentials(made.oauth1, made.bearer)
    return Credentials(fake.consumer_key, fake.consumer_secret, users)


def _restore_tokens(creds: Credentials, journal: Journal) -> None:
    """Use refreshed OAuth 2.0 tokens from an earlier run, and keep new ones as they come."""

    def keep(user: BearerUser) -> None:
        journal.save_tokens(user.user_id, user.access_token, user.refresh_token)

    for user in creds.users.values():
        if user.bearer is not None:
            saved = journal.tokens(user.bearer.user_id)
            if saved is not None:
                user.bearer.access_token, user.bearer.refresh_token = (
                    saved[0],
                    saved[1] or user.bearer.refresh_token,
                )
            user.bearer.on_refresh = keep


async def _dry_run(args: argparse.Namespace, creds: Credentials, console: Console, base_url: str) -> int:
    """A full rehearsal that sends nothing: every line and ``then`` step, the credentials each needs, the
    options, X and Redis reachable, what the journal would skip, the least time and the cost."""
    limits = _rate_limits(args.rate_limit)
    prices = _prices(args.price)
    problems = 0
    journal = None
    journal_path = _journal_path(args)
    if journal_path.is_file():
        journal = Journal(journal_path, lock=False)
    plan = Plan()
    valid = 0
    keys = LineKeys()
    try:
        for number, text in read_lines(args.jobs):
            parsed = parse_line(number, text, creds, keys, args.jobs.parent)
            if isinstance(parsed, LineProblem):
                problems += 1
                console.print(f"line {parsed.line}: {parsed.message}", markup=False, highlight=False)
                continue
            valid += 1
            record = journal.get(parsed.key, parsed.digest) if journal is not None else None
            if record is not None and record.state in ("done", "failed", "unsettled"):
                plan.skipped += 1
            else:
                plan.add(parsed)
    finally:
        if journal is not None:
            journal.close()
    problems += await _reachable(base_url, args, console)
    seconds = plan.seconds(limits)
    kinds = plan.kinds
    print(f"dry run: {valid} valid line(s), {problems} problem(s); nothing was sent")
    if journal is not None:
        print(f"  the journal {journal_path} has {plan.skipped} of them over: they would be skipped")
    posts, with_url = kinds["post"] + kinds["post_with_url"], kinds["post_with_url"]
    print(
        f"  would send {posts} post(s) ({with_url} with a URL), {kinds['bookmark']} bookmark(s), "
        f"{kinds['collection']} collection change(s)"
    )
    took = "unknown until X answers (no published limit)" if seconds is None else f"{seconds:,.0f} s"
    print(f"  least time the rate windows allow: {took}")
    print(f"  cost at pay-per-use prices: ${plan.cost(prices):,.2f} ({_price_list(prices)})")
    return 1 if problems else 0


async def _reachable(base_url: str, args: argparse.Namespace, console: Console) -> int:
    """Check that X (or the fake) answers, through the job's proxy and CAs, and that Redis does;
    returns how many do not."""
    problems = 0
    redis: str | None = args.redis
    try:
        transport = AiohttpTransport(
            timeouts=Timeouts(connect=5.0, total=5.0), proxy=args.proxy, ca_bundle=args.ca_bundle
        )
    except ValidationError as exc:
        raise _Usage(str(exc)) from None
    try:
        response = await transport.send(WireRequest("HEAD", base_url + "/2/openapi.json", {}))
        print(f"  {base_url}: reachable (HTTP {response.status})")
    except XError as exc:
        console.print(f"{base_url}: unreachable: {exc}", markup=False, highlight=False)
        problems += 1
    finally:
        await transport.aclose()
    if redis is not None:
        try:
            store = RedisStore(redis, timeout=5.0)
        except ValueError as exc:
            console.print(f"--redis: {exc}", markup=False, highlight=False)
            return problems + 1
        try:
            await store.check()
            print(f"  {store!r}: reachable")
        except XError as exc:
            console.print(f"{store!r}: {exc}", markup=False, highlight=False)
            problems += 1
        finally:
            await store.aclose()
    return problems


def _prices(specs: list[str]) -> dict[str, float]:
    """``NAME=USD`` options over the default prices."""
    prices = dict(DEFAULT_PRICES)
    for spec in specs:
        name, _, value = spec.partition("=")
        try:
            price = float(value)
        except ValueError:
            price = -1.0
        if name not in DEFAULT_PRICES or not 0 <= price < math.inf:
            raise _Usage(f"--price {spec!r}: expected one of {', '.join(DEFAULT_PRICES)}=USD")
        prices[name] = price
    return prices


def _price_list(prices: Mapping[str, float]) -> str:
    return ", ".join(f"{name} ${price:g}" for name, price in prices.items())


async def _run(
    args: argparse.Namespace,
    client: Client,
    creds: Credentials,
    journal: Journal,
    total: int,
    per_user: dict[str, int],
    console: Console,
) -> int:
    report = _Report(args.report)
    owner: dict[str, str] = {}  # in-flight item key -> user key, for the ETA
    remaining: dict[str, int] = {}
    for name, count in per_user.items():
        user = creds.users.get(name)
        primary = (user.oauth1 or user.bearer) if user is not None else None
        if primary is not None:
            remaining[primary.key] = remaining.get(primary.key, 0) + count

    stopped = _on_signals(client, console)
    can_run = {name for name in per_user if name in creds.users}
    refused = _Refusals(creds)

    def items() -> Iterator[Item]:
        keys = LineKeys()
        for number, text in read_lines(args.jobs):
            if stopped:
                return  # stopping: no new lines
            parsed = parse_line(number, text, creds, keys, args.jobs.parent)
            if isinstance(parsed, LineProblem):
                report.problem(parsed)
                progress.advance(task)
                continue
            owner[parsed.key] = parsed.user.key
            report.numbers[parsed.key] = number
            yield parsed

    start = time.monotonic()
    columns = (
        TextColumn("[bold]posting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("eta {task.fields[eta]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("job", total=total, status="", eta="?")
        ticker = asyncio.get_running_loop().create_task(
            _tick(progress, task, client, report, remaining, start, total)
        )
        try:
            outcomes = run(
                client,
                items(),
                journal=journal,
                concurrency=args.concurrency,
                retry_failed=args.retry_failed,
                resend_unknown=args.resend_unknown,
            )
            async for outcome in outcomes:
                report.outcome(outcome)
                user_key = owner.pop(outcome.key, None)
                if user_key in remaining:
                    remaining[user_key] -= 1
                refused.count(outcome)
                if refused.lines and not stopped and can_run <= set(refused.lines):
                    stopped.halt(client, _EVERYONE_REFUSED)
                progress.advance(task)
        finally:
            ticker.cancel()
        _status(progress, task, client, report, remaining, start)
    summary = _summary(report, total, start)
    uploads = _uploads(client)
    if uploads["uploads"] or uploads["segments"]:
        summary["uploads"] = uploads
    if refused.lines:
        summary["credentials_refused"] = refused.lines
    if stopped.signum is not None:
        summary["stopped_by"] = signal.Signals(stopped.signum).name
    elif stopped.reason is not None:
        summary["stopped_by"] = stopped.reason
    report.close(summary)
    _print_summary(summary)
    if stopped.closing is not None:
        await stopped.closing
    refused.tell(console)
    if stopped.signum is not None:
        console.print(f"stopped by {summary['stopped_by']}: run the same command again to finish the job")
        return 128 + stopped.signum
    if stopped.reason is not None:
        console.print(f"stopped: {stopped.reason}", markup=False)
    counts = report.counts
    failed = counts["failed"] + counts["invalid"] + counts["unknown"] + counts["not_done"]
    return 1 if failed else 0


#: Seconds that requests already on the wire get to be answered after a stop signal.
STOP_GRACE = 5.0


class _Stop:
    """Why the job stops early (a signal, or a reason of its own), and the client's closing."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.reason: str | None = None
        self.closing: asyncio.Task[None] | None = None

    def __bool__(self) -> bool:
        return self.signum is not None or self.reason is not None

    def halt(self, client: Client, reason: str) -> None:
        """Stop for ``reason``: nothing new is sent; requests on the wire get ``STOP_GRACE`` seconds."""
        self.reason = reason
        self.closing = asyncio.get_running_loop().create_task(client.aclose(grace=STOP_GRACE))


class _Refusals:
    """Lines that ended with their user's credentials refused, by user name, and saying so."""

    def __init__(self, creds: Credentials) -> None:
        self._names = {
            u.key: name for name, uc in creds.users.items() for u in (uc.oauth1, uc.bearer) if u is not None
        }
        self.lines: dict[str, int] = {}

    def count(self, outcome: Outcome) -> None:
        for step in (outcome, *outcome.steps):
            if step.error_type in _REFUSED and step.user in self._names:
                name = self._names[step.user]
                self.lines[name] = self.lines.get(name, 0) + 1

    def tell(self, console: Console) -> None:
        for name, count in sorted(self.lines.items()):
            console.print(f"user {name!r}: credentials refused (401); {count} line(s) not done", markup=False)


#: Outcomes that say a user's credentials were refused.
_REFUSED = frozenset({"Unauthorized", "CredentialsRefused"})
_EVERYONE_REFUSED = (
    "every user's credentials were refused (401): check the app's consumer key and secret (or client "
    "id), and the users' tokens"
)


def _on_signals(client: Client, console: Console, on_stop: Callable[[], None] | None = None) -> _Stop:
    """SIGTERM and SIGINT stop the job: nothing new is sent, requests on the wire get ``STOP_GRACE``
    seconds and are journaled, and the report is written. A second signal exits at once (SQLite keeps
    the journal consistent, and the report is as last flushed)."""
    stopped = _Stop()
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        if stopped.signum is not None:
            os._exit(128 + signum)
        stopped.signum = signum
        console.print(f"{signal.Signals(signum).name}: stopping; send it again to exit at once")
        if on_stop is not None:
            on_stop()
        if stopped.closing is None:
            stopped.closing = loop.create_task(client.aclose(grace=STOP_GRACE))

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread, or Windows
            loop.add_signal_handler(signum, stop, signum)
    return stopped


def _uploads(client: Client) -> dict[str, int]:
    """Media this run uploaded: whole uploads (one request, or finalized) and segments sent."""
    stats = client.rate_stats
    done = stats(endpoint="media_upload").sent + stats(endpoint="media_finalize").sent
    return {"uploads": done, "segments": stats(endpoint="media_append").sent}


def _summary(report: _Report, total: int, start: float) -> dict[str, Any]:
    elapsed = time.monotonic() - start
    return {
        **report.counts,
        "lines": total,
        "seconds": round(elapsed, 3),
        "errors": report.errors,
        "reasons": report.reasons,
    }


async def _tick(
    progress: Progress,
    task: TaskID,
    client: Client,
    report: _Report,
    remaining: dict[str, int],
    start: float,
    total: int,
) -> None:
    ticks = 0
    while True:
        # The ETA walks every user's budget: every 2 s is often enough; the report, every 5 s.
        _status(progress, task, client, report, remaining, start, eta=ticks % 4 == 0)
        if ticks % 10 == 9:
            report.flush({**_summary(report, total, start), "running": True})
        ticks += 1
        await asyncio.sleep(0.5)


def _status(
    progress: Progress,
    task: TaskID,
    client: Client,
    report: _Report,
    remaining: dict[str, int],
    start: float,
    eta: bool = True,
) -> None:
    counts = report.counts
    failed = counts["failed"] + counts["invalid"] + counts["not_done"] + counts["unknown"]
    done = counts["done"] + failed
    elapsed = max(time.monotonic() - start, 1e-6)
    status = (
        f"[green]{counts['done']} done[/] [red]{failed} not done[/] "
        f"[yellow]{client.scheduler.waiting} waiting for budget[/] {done / elapsed:.1f}/s"
    )
    uploads = _uploads(client)
    if uploads["segments"] or uploads["uploads"]:
        status += f" [cyan]{uploads['uploads']} uploads ({uploads['segments']} segments)[/]"
    if eta:
        progress.update(task, status=status, eta=_eta(client, remaining))
    else:
        progress.update(task, status=status)


def _eta(client: Client, remaining: dict[str, int]) -> str:
    """Seconds until the last user's last call, by the rate windows the scheduler knows of."""
    now = client.scheduler.now()
    latest = None
    for user_key, count in remaining.items():
        if count > 0:
            for endpoint in (
                "create_tweet",
                "bookmark",
                "add_collection_entry",
                "media_upload",
                "media_initialize",
            ):
                at = client.scheduler.eta(user_key, endpoint, count)
                if at is not None and (latest is None or at > latest):
                    latest = at
    if latest is None:
        return "?"
    return f"{max(0.0, latest - now):.0f}s"


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title="asyncx post", show_header=True)
    table.add_column("outcome")
    table.add_column("lines", justify="right")
    table.add_row("done", str(summary["done"]))
    table.add_row("  of which resumed from the journal", str(summary["resumed"]))
    table.add_row("  of which delivered by an earlier attempt", str(summary["delivered_earlier"]))
    if summary.get("not_done"):
        table.add_row("not done yet: the same command sends them", str(summary["not_done"]))
    table.add_row("failed: refused for their content", str(summary["failed"]))
    if summary.get("unknown"):
        table.add_row("unknown (may exist; see --resend-unknown)", str(summary["unknown"]))
    for error, count in sorted(summary["errors"].items()):
        table.add_row(f"  why not: {error}", str(count))
    table.add_row("invalid (skipped)", str(summary["invalid"]))
    table.add_row("time", f"{summary['seconds']:.1f}s")
    console = Console()
    console.print(table)
    print_reasons(console, summary.get("reasons", {}))


def note_reasons(outcome: Outcome, reasons: dict[str, str]) -> None:
    """Keep the first message seen for each kind of failure in ``outcome`` and its steps: what a
    summary's "why not" means, in X's or asyncx's words (a job file's and a queue worker's alike)."""
    for o in (outcome, *outcome.steps):
        if o.status == "failed":
            reasons.setdefault(o.error_type or "Error", cut(o.error or "", 300))


def print_reasons(console: Console, reasons: Mapping[str, str]) -> None:
    """One line per kind of failure, under a summary's table."""
    for error, reason in sorted(reasons.items()):
        if reason:
            console.print(f"{error}: {reason}", markup=False, highlight=False, soft_wrap=True)
