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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asyncx", description="Bulk jobs for the X API.")
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
        help="share rate budgets with other workers (each with its own jobs file) through this Redis",
    )
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # exits 2 on bad usage
    if args.concurrency < 1:
        print("asyncx: --concurrency must be at least 1", file=sys.stderr)
        return 2
    from .bulk._command import run_post

    return run_post(args)
