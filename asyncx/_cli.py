"""The ``asyncx`` command (and ``python -m asyncx``): ``asyncx post JOBS.jsonl`` runs a bulk job.

Only the command line is parsed here; the command's module (``asyncx.bulk._command``) is imported when a
command runs, so ``--help`` starts fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

_POST_HELP = """\
Run a jobs file: one JSON action per line, journaled, so the same command run again finishes the job.

A rerun sends every line that did not end delivered; lines X refused for their content stay failed unless
--retry-failed; posts without text whose delivery could not be settled stay unknown unless
--resend-unknown. SIGTERM or Ctrl-C stops the job cleanly (a second one exits at once).

exit codes: 0 every line done; 1 some failed, invalid or unknown; 2 bad usage or a journal in use;
130 / 143 stopped by SIGINT / SIGTERM."""


_WORK_HELP = """\
Work the lines of a Redis queue that `asyncx post JOBS --redis URL --queue NAME` filled, beside any other
workers, until every line has ended; then exit 0. Give it the same credentials as the other workers.

A worker that dies leaves its lines to be taken over after --claim-after seconds, as lines whose earlier
attempt may have landed: nothing is lost and nothing is posted twice. SIGTERM or Ctrl-C stops it
cleanly: its lines not done go back to the queue at once.

exit codes: 0 the queue has drained; 2 bad usage or Redis unreachable; 130 / 143 stopped by a signal."""


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="asyncx", description="Bulk jobs for the X API.")
    parser.add_argument("--version", action="version", version=f"asyncx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    post = sub.add_parser(
        "post",
        help="run a jobs file: one JSON action per line",
        description=_POST_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    post.add_argument("jobs", type=Path, help='JSON lines: {"user": "alice", "text": "..."} and more')
    post.add_argument(
        "--credentials", type=Path, help="TOML file with [app] and [users.NAME] (or ASYNCX_* env)"
    )
    post.add_argument(
        "--journal", type=Path, help="SQLite journal for resuming (default: JOBS.journal.sqlite)"
    )
    post.add_argument("--concurrency", type=int, default=100, help="items under way at once (default 100)")
    post.add_argument("--base-url", help="API base URL (default https://api.twitter.com)")
    _network_options(post)
    post.add_argument(
        "--rate-limit",
        action="append",
        default=[],
        metavar="NAME=N/SECONDS",
        help="override a limit, e.g. create_tweet=100/900 or app:create_tweet=100000/86400 (repeatable)",
    )
    post.add_argument(
        "--redis",
        metavar="URL",
        help="share rate budgets (and OAuth 2.0 tokens) with other workers through this Redis",
    )
    post.add_argument(
        "--queue",
        metavar="NAME",
        help="put the lines on this Redis queue (with --redis) and work it; others join with asyncx work",
    )
    _queue_options(post)
    post.add_argument("--report", type=Path, help="write every line's outcome to this JSON file")
    post.add_argument("--dry-run", action="store_true", help="check every line and credential; send nothing")
    post.add_argument(
        "--retry-failed",
        action="store_true",
        help="send again the lines X refused for their content (a 400, a duplicate) in an earlier run",
    )
    post.add_argument(
        "--price",
        action="append",
        default=[],
        metavar="NAME=USD",
        help="override a price for --dry-run's cost: post, post_with_url or bookmark (repeatable)",
    )
    post.add_argument(
        "--resend-unknown",
        action="store_true",
        help="send again the posts without text whose delivery an earlier run could not settle (may double)",
    )
    post.add_argument(
        "--sandbox", action="store_true", help="run against an in-process fake X with made-up users"
    )
    work = sub.add_parser(
        "work",
        help="work a Redis queue that asyncx post --queue filled, until it has drained",
        description=_WORK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    work.add_argument("--redis", metavar="URL", required=True, help="the Redis that holds the queue")
    work.add_argument("--queue", metavar="NAME", required=True, help="the queue's name")
    work.add_argument(
        "--credentials", type=Path, help="TOML file with [app] and [users.NAME] (or ASYNCX_* env)"
    )
    work.add_argument("--concurrency", type=int, default=100, help="lines under way at once (default 100)")
    work.add_argument("--base-url", help="API base URL (default https://api.twitter.com)")
    _network_options(work)
    work.add_argument(
        "--rate-limit", action="append", default=[], metavar="NAME=N/SECONDS", help="override a limit"
    )
    _queue_options(work)
    work.add_argument("--report", type=Path, help="write the whole queue's outcomes to this JSON file")
    status = sub.add_parser("status", help="where a Redis queue's lines are")
    status.add_argument("--redis", metavar="URL", required=True, help="the Redis that holds the queue")
    status.add_argument("--queue", metavar="NAME", required=True, help="the queue's name")
    _cluster_option(status)
    status.add_argument(
        "--json",
        action="store_true",
        help="print {queued, in_flight, done, failed, unknown, retryable} as JSON",
    )
    return parser


def _queue_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--claim-after",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a dead worker's lines are taken over after this long (default 60)",
    )
    _cluster_option(parser)


def _network_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--proxy",
        metavar="URL",
        help="HTTP proxy for every request (a user's own `proxy` in the credentials file wins; "
        "default: HTTPS_PROXY / HTTP_PROXY, minus NO_PROXY)",
    )
    parser.add_argument(
        "--ca-bundle",
        type=Path,
        metavar="PATH",
        help="PEM file of CAs to trust beside the system's, e.g. a corporate proxy's "
        "(SSL_CERT_FILE works too); TLS is always verified",
    )


def _cluster_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis-cluster", action="store_true", help="the Redis URL is a node of a Redis Cluster"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # exits 2 on bad usage
    if getattr(args, "concurrency", 1) < 1:
        print("asyncx: --concurrency must be at least 1", file=sys.stderr)
        return 2
    if getattr(args, "claim_after", 1.0) <= 0:
        print("asyncx: --claim-after must be positive", file=sys.stderr)
        return 2
    if args.command == "post":
        from .bulk._command import run_post

        return run_post(args)
    from .bulk._queued import run_queue_command

    return run_queue_command(args)
