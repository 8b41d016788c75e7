"""The job journal: SQLite, written before and after each send, so a killed job resumes exactly.

A step is recorded as ``sending`` before its request goes out and gets its outcome after. On resume, a
step still ``sending`` (or ``unknown``: it ended in an error after an attempt may have reached X) is sent
again as a call whose earlier attempt may have landed, so a "duplicate" answer counts as delivered.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

__all__ = ["Journal", "JournalInUse", "Record"]

#: The journal's format: 2 keys lines by identity (``id:...`` or ``sha:...``), 0 by line number.
VERSION = 2

#: States that end a step: it is not sent again. ``unsettled``: it may have been made and reading back
#: could not tell (``--resend-unknown`` sends it again).
FINAL = frozenset({"done", "failed", "unsettled"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS steps (
    key TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    updated REAL NOT NULL,
    first_sent REAL
);
CREATE TABLE IF NOT EXISTS tokens (
    user_id TEXT PRIMARY KEY,
    access_token TEXT NOT NULL,
    refresh_token TEXT
);
CREATE TABLE IF NOT EXISTS uploads (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
"""


@attrs.frozen
class Record:
    """What the journal holds for one step."""

    state: str
    attempts: int
    result: dict[str, Any]
    #: When the step first went out (epoch seconds): a read that settles it starts there.
    first_sent: float | None = None


class Journal:
    """A SQLite journal at ``path``; one step per key (``sha:...:1``, ``sha:...:1:bookmark``, ...).

    WAL mode with ``synchronous=NORMAL``: a committed write survives the process being killed at any
    moment (it is not fsynced against power loss, which would cost a disk flush per step).
    """

    def __init__(self, path: str | Path, *, lock: bool = True) -> None:
        self.path = Path(path)
        self._sending: list[tuple[str, str, float]] = []
        self._finished: dict[str, tuple[str, int, str, float]] = {}
        self._ready: list[asyncio.Future[None]] = []
        self._flushing: asyncio.Handle | None = None
        try:
            self._lock = _hold(self.path) if lock else None
            _owner_only(self.path)
        except OSError as exc:
            raise sqlite3.OperationalError(f"{self.path}: {exc.strerror or exc}") from None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            self._release_lock()
            raise sqlite3.OperationalError(f"{self.path}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(steps)")}
            if "first_sent" not in columns:  # a journal from before reads settled posts without text
                self._db.execute("ALTER TABLE steps ADD COLUMN first_sent REAL")
        except sqlite3.Error as exc:  # not a journal, or a damaged one: hold on to nothing
            self._db.close()
            self._release_lock()
            raise sqlite3.OperationalError(f"{self.path}: {exc}") from None
        if self._version() == 0 and not self._has_line_numbers():
            self._db.execute(f"PRAGMA user_version = {VERSION}")

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def get(self, key: str, digest: str) -> Record | None:
        """The step's record, or None if it is new (or its job line has changed since)."""
        if key in self._finished:
            self.flush()  # the same step twice in one run: read what it ended as
        row = self._db.execute(
            "SELECT digest, state, attempts, result, first_sent FROM steps WHERE key = ?", (key,)
        ).fetchone()
        if row is None or row[0] != digest:
            return None
        return Record(row[1], row[2], json.loads(row[3]) if row[3] else {}, row[4])

    def sending(self, key: str, digest: str) -> None:
        """Record, durably, that the step is about to be sent."""
        self._sending.append((key, digest, time.time()))
        self.flush()

    async def sending_soon(self, key: str, digest: str) -> None:
        """``sending``, in one transaction with every step that starts in the same turn of the event loop
        (and the outcomes waiting to be written): returns once the record is durable."""
        self._sending.append((key, digest, time.time()))
        ready = asyncio.get_running_loop().create_future()
        self._ready.append(ready)
        self._schedule()
        await ready

    def finish(self, key: str, state: str, attempts: int, result: dict[str, Any]) -> None:
        """Record the step's outcome: ``done``, ``failed`` (final) or ``unknown`` (send again on resume).

        In an event loop it is written with the next batch: an outcome lost to a crash only makes the
        step look in flight, which a resume settles (a duplicate, or a read back, tells it was made)."""
        self._finished[key] = (state, attempts, json.dumps(result), time.time())
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
        else:
            self._schedule()

    def _schedule(self) -> None:
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().call_soon(self._flush_ready)

    def _flush_ready(self) -> None:
        self._flushing = None
        ready, self._ready = self._ready, []
        try:
            self.flush()
        except Exception as exc:
            for future in ready:
                if not future.done():
                    future.set_exception(exc)
            return
        for future in ready:
            if not future.done():
                future.set_result(None)

    def flush(self) -> None:
        """Write what waits to be written, in one transaction: steps about to go out, then outcomes."""
        if not self._sending and not self._finished:
            return
        sending, self._sending = self._sending, []
        finished, self._finished = self._finished, {}
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT INTO steps (key, digest, state, updated, first_sent) VALUES (?, ?, 'sending', ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET digest = excluded.digest, state = 'sending', "
                "updated = excluded.updated, first_sent = COALESCE(steps.first_sent, excluded.first_sent)",
                [(key, digest, now, now) for key, digest, now in sending],
            )
            db.executemany(
                "UPDATE steps SET state = ?, attempts = attempts + ?, result = ?, updated = ? WHERE key = ?",
                [(*outcome, key) for key, outcome in finished.items()],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def save_tokens(self, user_id: str, access_token: str, refresh_token: str | None) -> None:
        """Keep a user's refreshed OAuth 2.0 tokens, synced to disk before they are used: X's refresh
        tokens are single-use, so a kill right after must not lose the new one."""
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO tokens (user_id, access_token, refresh_token) VALUES (?, ?, ?)",
                (user_id, access_token, refresh_token),
            )
        finally:
            self._db.execute("PRAGMA synchronous=NORMAL")

    def save_upload(self, key: str, state: dict[str, Any]) -> None:
        """Keep how far a media upload got (an ``UploadSession``, or the finished media), so a rerun
        resends no segment X holds and uploads nothing again while X keeps it."""
        self._db.execute(
            "INSERT OR REPLACE INTO uploads (key, state) VALUES (?, ?)", (key, json.dumps(state))
        )

    def upload(self, key: str) -> dict[str, Any] | None:
        """How far a media upload got, as ``save_upload`` kept it, or None."""
        row = self._db.execute("SELECT state FROM uploads WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def tokens(self, user_id: str) -> tuple[str, str | None] | None:
        """A user's OAuth 2.0 tokens as a run last refreshed them, ``(access, refresh)``, or None."""
        row = self._db.execute(
            "SELECT access_token, refresh_token FROM tokens WHERE user_id = ?", (user_id,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def _version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _has_line_numbers(self) -> bool:
        return self._db.execute("SELECT 1 FROM steps WHERE key LIKE 'line:%' LIMIT 1").fetchone() is not None

    @property
    def keyed_by_line_number(self) -> bool:
        """Written by an ``asyncx post`` from before line identities: its keys are ``line:N``."""
        return self._version() < VERSION

    def migrate_line_numbers(self, lines: Iterable[tuple[int, str, str, str]]) -> int:
        """Re-key a journal of ``line:N`` keys: ``lines`` gives, for each line of the jobs file, its number,
        the digest the old journal recorded for it, its new key and its new digest. A record moves to the
        new key of the line whose content it recorded, wherever that line now is; ``then`` steps move with
        it. Records that match no line stay as they are (they are never sent again). Returns how many moved.
        """
        old = {
            digest: key
            for key, digest in self._db.execute(
                "SELECT key, digest FROM steps WHERE key LIKE 'line:%' AND key NOT LIKE 'line:%:%'"
            )
        }
        moved = 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for _, was, key, digest in lines:
                previous = old.pop(was, None)
                if previous is None:
                    continue
                self._db.execute(
                    "UPDATE steps SET key = ?, digest = ? WHERE key = ?", (key, digest, previous)
                )
                for suffix in (":bookmark", ":collection"):
                    self._db.execute(
                        "UPDATE steps SET key = ? WHERE key = ?", (key + suffix, previous + suffix)
                    )
                moved += 1
            self._db.execute(f"PRAGMA user_version = {VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return moved

    def counts(self) -> dict[str, int]:
        """Steps by state."""
        return dict(self._db.execute("SELECT state, COUNT(*) FROM steps GROUP BY state").fetchall())

    def close(self) -> None:
        """Write what waits to be written, close the database and let go of the lock."""
        self.flush()
        self._db.close()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None


class JournalInUse(Exception):
    """Another run holds the journal: two runs on one journal would send the same lines twice."""


def _owner_only(path: Path) -> None:
    """Create the journal readable by its owner only (it holds tokens), and tighten an existing one."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _hold(path: Path) -> int | None:
    """Take the journal's lock file (``JOURNAL.lock``, holding the owner's pid) for this process."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return None
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise JournalInUse(f"the journal {path} is in use by process {holder}") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd
