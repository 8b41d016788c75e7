"""Job files and credentials for ``asyncx post``: JSON lines in, ``Item``s out; TOML or environment in,
users out.

A job line is one action::

    {"user": "alice", "text": "hello", ...any create_tweet field, "then": {"bookmark_as": "bob",
     "collection": "custom-1"}}
    {"user": "alice", "text": "look", "media": [{"path": "cat.jpg", "alt_text": "a cat"}]}
    {"action": "bookmark", "user": "bob", "tweet_id": "1460323737035677698"}
    {"action": "collection_add", "user": "alice", "collection": "custom-1", "tweet_id": "..."}
    {"action": "collection_curate", "user": "alice", "collection": "custom-1", "changes": [...]}
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from array import array
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from .._auth import BearerUser, OAuth1User, User
from .._errors import FieldError, ValidationError
from .._media import category_for, check_media, sniff
from .._models import AddCollectionEntry, Bookmark, CreateTweet, CurateCollection, Request
from ._runner import Item, MediaFile, Then

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "Credentials",
    "LineKeys",
    "LineProblem",
    "UserCredentials",
    "load_credentials",
    "parse_line",
    "read_lines",
]

ACTIONS = ("post", "bookmark", "collection_add", "collection_curate")


@attrs.frozen
class UserCredentials:
    """What one named user of a job can sign with."""

    oauth1: OAuth1User | None = None
    bearer: BearerUser | None = None


@attrs.frozen(repr=False)
class Credentials:
    """The app's keys and the job's users by name. Nothing secret is shown in its repr."""

    consumer_key: str | None = None
    consumer_secret: str | None = None
    users: Mapping[str, UserCredentials] = attrs.field(factory=dict)

    def __repr__(self) -> str:
        return f"Credentials(users={sorted(self.users)!r})"


def _user_from(
    fields: Mapping[str, Any], client_id: str | None, client_secret: str | None
) -> UserCredentials:
    oauth1 = bearer = None
    proxy = fields.get("proxy")
    if fields.get("access_token") and fields.get("access_token_secret"):
        oauth1 = OAuth1User(
            str(fields["access_token"]),
            str(fields["access_token_secret"]),
            fields.get("user_id"),
            proxy=proxy,
        )
    if fields.get("bearer_token"):
        if not fields.get("user_id"):
            raise ValidationError("a bearer_token needs the user_id it belongs to", field="user_id")
        bearer = BearerUser(
            access_token=str(fields["bearer_token"]),
            user_id=str(fields["user_id"]),
            refresh_token=fields.get("refresh_token"),
            client_id=fields.get("client_id", client_id),
            client_secret=fields.get("client_secret", client_secret),
            proxy=proxy,
        )
    return UserCredentials(oauth1, bearer)


def load_credentials(path: str | Path | None, environ: Mapping[str, str] = os.environ) -> Credentials:
    """Credentials from a TOML file and/or the environment (the environment wins).

    File: ``[app] consumer_key, consumer_secret, client_id, client_secret``; ``[users.NAME]
    access_token, access_token_secret`` (OAuth 1.0a) and/or ``bearer_token, user_id, refresh_token``,
    and ``proxy``: an HTTP proxy URL for that user's requests.
    Environment: ``ASYNCX_CONSUMER_KEY``, ``ASYNCX_CONSUMER_SECRET``, ``ASYNCX_CLIENT_ID`` and
    ``ASYNCX_USER_<NAME>_<FIELD>`` (``ASYNCX_USER_ALICE_ACCESS_TOKEN``; names are lower-cased).
    """
    data: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    app = dict(data.get("app", {}))
    users: dict[str, dict[str, Any]] = {name: dict(v) for name, v in data.get("users", {}).items()}
    for key, value in environ.items():
        if key in (
            "ASYNCX_CONSUMER_KEY",
            "ASYNCX_CONSUMER_SECRET",
            "ASYNCX_CLIENT_ID",
            "ASYNCX_CLIENT_SECRET",
        ):
            app[key.removeprefix("ASYNCX_").lower()] = value
        elif key.startswith("ASYNCX_USER_"):
            rest = key.removeprefix("ASYNCX_USER_").lower()
            for field in (
                "access_token_secret",
                "access_token",
                "bearer_token",
                "user_id",
                "refresh_token",
                "proxy",
            ):
                if rest.endswith("_" + field):
                    users.setdefault(rest.removesuffix("_" + field), {})[field] = value
                    break
    client_id, client_secret = app.get("client_id"), app.get("client_secret")
    return Credentials(
        app.get("consumer_key"),
        app.get("consumer_secret"),
        {name: _user_from(fields, client_id, client_secret) for name, fields in users.items()},
    )


@attrs.frozen
class LineProblem:
    """A job line that cannot be run, and why."""

    line: int
    message: str
    user: str | None = None


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Numbered non-blank lines of a jobs file, streamed. Bytes that are not UTF-8 survive as lone
    surrogates (``surrogateescape``), so one bad line is reported by ``parse_line`` and the rest run."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                yield number, line


def _undecodable(text: str) -> str | None:
    """Why a line read by ``read_lines`` is not UTF-8, or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        byte = ord(text[exc.start]) - 0xDC00 if 0xDC80 <= ord(text[exc.start]) <= 0xDCFF else None
        where = f"byte 0x{byte:02x}" if byte is not None else "a character"
        return f"not valid UTF-8 ({where} at column {exc.start + 1})"
    return None


def _pick(creds: Credentials, name: object, need: str, line: int) -> User | LineProblem:
    if not isinstance(name, str) or not name:
        return LineProblem(line, 'needs a "user"')
    user = creds.users.get(name)
    if user is None:
        return LineProblem(line, f"user {name!r} has no credentials", name)
    chosen = {"oauth1": user.oauth1, "bearer": user.bearer, "any": user.oauth1 or user.bearer}[need]
    if chosen is None:
        kind = {"oauth1": "OAuth 1.0a", "bearer": "OAuth 2.0 (bearer_token)", "any": "any"}[need]
        return LineProblem(line, f"user {name!r} has no {kind} credentials", name)
    return chosen


class LineKeys:
    """Gives each line of one pass over a jobs file its journal key, by what the line is, not where.

    A line's key is its ``"id"`` field when it has one; otherwise a digest of its content (all but
    ``then``, so a ``then`` step can be mended without posting again) and its occurrence among identical
    lines. Inserting, deleting or reordering lines never changes another line's key.
    """

    __slots__ = ("_ids", "_repeats", "_seen")

    def __init__(self) -> None:
        self._seen = _DigestTable()  # content digests met so far
        self._repeats: dict[bytes, int] = {}  # those met more than once -> how many times
        self._ids = _DigestTable(with_values=True)  # digest of an id -> the line that has it

    def key(self, number: int, explicit: object, digest: bytes) -> str | LineProblem:
        if explicit is not None:
            if not isinstance(explicit, str) or not 1 <= len(explicit) <= 200 or _undecodable(explicit):
                return LineProblem(number, "id: must be a string of 1 to 200 characters")
            first = self._ids.setdefault(hashlib.sha256(explicit.encode()).digest()[:12], number)
            if first != number:
                return LineProblem(number, f"id: {explicit!r} is line {first}'s id too")
            return f"id:{explicit}"
        if self._seen.add(digest):
            return f"sha:{digest.hex()}:1"
        occurrence = self._repeats[digest] = self._repeats.get(digest, 1) + 1
        return f"sha:{digest.hex()}:{occurrence}"


class _DigestTable:
    """A set of 12-byte digests in two flat arrays (open addressing, linear probing, at most 80% full),
    with a value below 2**32 for each when made ``with_values``: 15 to 30 bytes a line (20 to 40 with
    values) where a dict of bytes takes 120, so a pass over a long file stays small. A digest is kept as
    its first 8 bytes and its last 4; no digest is all zeros (a chance of 2**-96)."""

    __slots__ = ("_hi", "_lo", "_mask", "_used", "_values")

    def __init__(self, *, with_values: bool = False) -> None:
        self._values: array[int] | None = array("I") if with_values else None
        self._empty(1024)

    def _empty(self, size: int) -> None:
        self._mask = size - 1
        self._hi = array("Q", bytes(8 * size))
        self._lo = array("I", bytes(4 * size))
        if self._values is not None:
            self._values = array("I", bytes(4 * size))
        self._used = 0

    def add(self, digest: bytes) -> bool:
        """Keep ``digest``; True if it is new."""
        used = self._used
        self._slot(*_halves(digest))
        return self._used != used

    def setdefault(self, digest: bytes, value: int) -> int:
        """The value kept for ``digest``, keeping ``value`` (not 0) if there was none."""
        i = self._slot(*_halves(digest))
        values = self._values  # read after: taking the slot may have moved the table
        assert values is not None, "a table made with_values"
        kept = values[i]
        if kept:
            return kept
        values[i] = value
        return value

    def _slot(self, hi: int, lo: int) -> int:
        """The index of a digest's slot, taken for it if it had none."""
        his, los, mask = self._hi, self._lo, self._mask
        i = hi & mask
        while True:
            held = his[i]
            if held == hi and los[i] == lo:
                return i
            if not held and not los[i]:
                break
            i = (i + 1) & mask
        his[i], los[i] = hi, lo
        self._used += 1
        if self._used * 5 > mask * 4:  # four fifths full: double it
            self._grow()
            return self._slot(hi, lo)
        return i

    def _grow(self) -> None:
        his, los, values = self._hi, self._lo, self._values
        self._empty(2 * (self._mask + 1))
        moved = self._values
        for i, hi in enumerate(his):
            lo = los[i]
            if hi or lo:
                at = self._slot(hi, lo)
                if values is not None and moved is not None:
                    moved[at] = values[i]


def _halves(digest: bytes) -> tuple[int, int]:
    """A 12-byte digest as the table keeps it: its first 8 bytes and its last 4, as integers."""
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:12], "little")


def content_digest(data: Mapping[str, Any]) -> bytes:
    """A digest of a line's content, whatever its key order or spacing."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).digest()[:12]


def old_digest(text: str) -> str:
    """What journals before line identities recorded for a line (its text, stripped)."""
    return hashlib.sha1(text.strip().encode("utf-8", "surrogateescape")).hexdigest()


def parse_line(
    number: int, text: str, creds: Credentials, keys: LineKeys | None = None, base: Path | None = None
) -> Item | LineProblem:
    """The ``Item`` for one job line, or what is wrong with it. It never raises: any line, however
    broken, becomes a ``LineProblem`` with its line number and a reason. ``keys`` gives the line its
    journal key; use one ``LineKeys`` for a whole pass over the file. Media paths are relative to
    ``base`` (the jobs file's folder)."""
    bad = _undecodable(text)
    if bad is not None:
        return LineProblem(number, bad)
    try:
        data = json.loads(text)
    except ValueError as exc:
        return LineProblem(number, f"not JSON: {exc}")
    except RecursionError:
        return LineProblem(number, "not JSON: nested too deeply")
    if not isinstance(data, dict):
        return LineProblem(number, "must be a JSON object")
    explicit = data.pop("id", None)
    then_spec = data.pop("then", None)
    action = data.setdefault("action", "post")
    digest = content_digest(data)
    del data["action"]
    name = data.pop("user", None)
    if action not in ACTIONS:
        return LineProblem(number, f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    need = {"post": "any", "bookmark": "bearer"}.get(action, "oauth1")
    user = _pick(creds, name, need, number)
    if isinstance(user, LineProblem):
        return user
    uploads: tuple[MediaFile, ...] = ()
    try:
        if action == "post" and isinstance(data.get("media"), list):
            uploads = _media_files(data.pop("media"), base or Path.cwd())
            # Checked with stand-in ids now; the uploaded media's ids replace them before it is sent.
            data["media"] = {"media_ids": ["1"] * len(uploads)}
        request = _request(action, data)
        then = _then(then_spec, creds, number) if then_spec is not None else None
    except ValidationError as exc:
        return LineProblem(number, str(exc))
    if isinstance(then, LineProblem):
        return then
    key = (keys or LineKeys()).key(number, explicit, digest)
    if isinstance(key, LineProblem):
        return key
    return Item(key, request, user, then, digest.hex(), uploads)


def _media_files(spec: list[Any], base: Path) -> tuple[MediaFile, ...]:
    """The files of a line's ``media`` list, each checked as X would: it exists, and its type, size and
    count fit a post (up to 4 images, or one GIF, or one video)."""
    if not 1 <= len(spec) <= 4:
        raise ValidationError(f"must list 1 to 4 files, got {len(spec)}", field="media")
    files, categories = [], []
    for i, entry in enumerate(spec):
        field = f"media[{i}]"
        if not isinstance(entry, dict) or not set(entry) <= {"path", "alt_text"} or "path" not in entry:
            raise ValidationError('must be {"path": ..., "alt_text": ...}', field=field)
        path, alt = entry["path"], entry.get("alt_text")
        if not isinstance(path, str) or not path or _undecodable(path):
            raise ValidationError("path must be a file name", field=f"{field}.path")
        if alt is not None and (not isinstance(alt, str) or not 1 <= len(alt) <= 1000):
            raise ValidationError("must be 1 to 1,000 characters", field=f"{field}.alt_text")
        full = base / path
        try:
            with full.open("rb") as f:
                head, size = f.read(64), os.fstat(f.fileno()).st_size
        except OSError as exc:
            raise ValidationError(f"cannot read {path!r}: {exc.strerror}", field=f"{field}.path") from None
        kind = sniff(head)
        if kind is None:
            raise ValidationError(f"{path!r} is not an image, GIF or video X takes", field=f"{field}.path")
        category = category_for(kind)
        try:
            check_media(kind, category, size)
        except ValidationError as exc:
            raise ValidationError(f"{path!r}: {exc}", field=f"{field}.path") from None
        files.append(MediaFile(str(full), alt))
        categories.append(category)
    if len(categories) > 1 and any(c != "tweet_image" for c in categories):
        raise ValidationError("a post takes up to 4 images, or one GIF, or one video", field="media")
    return tuple(files)


def _request(action: str, data: dict[str, Any]) -> Request:
    if action in ("collection_add", "collection_curate"):
        data["id"] = data.pop("collection", None)
    cls = _CLASSES[action]
    _check_fields(cls, data, renamed={"id": "collection"})
    return cls(**data)


_CLASSES: dict[str, type[Request]] = {
    "post": CreateTweet,
    "bookmark": Bookmark,
    "collection_add": AddCollectionEntry,
    "collection_curate": CurateCollection,
}


def _check_fields(cls: type[Request], data: Mapping[str, Any], renamed: Mapping[str, str]) -> None:
    """Name every unknown and missing field, as the job file spells them."""
    fields = attrs.fields(cls)  # type: ignore[arg-type]
    names = {a.name for a in fields}
    errors = [FieldError(repr(k)[:40], "unknown field") for k in data if k not in names]
    errors += [
        FieldError(renamed.get(a.name, a.name), "is required")
        for a in fields
        if a.default is attrs.NOTHING and data.get(a.name) is None
    ]
    if errors:
        raise ValidationError(errors)


def _then(spec: object, creds: Credentials, number: int) -> Then | LineProblem:
    if not isinstance(spec, dict) or not set(spec) <= {"bookmark_as", "collection", "collection_as"}:
        return LineProblem(number, "then: must be an object of bookmark_as, collection, collection_as")
    picked: dict[str, User] = {}
    for field, need in (("bookmark_as", "bearer"), ("collection_as", "oauth1")):
        if field in spec:
            user = _pick(creds, spec[field], need, number)
            if isinstance(user, LineProblem):
                return user
            picked[field] = user
    bookmark_as, collection_as = picked.get("bookmark_as"), picked.get("collection_as")
    assert bookmark_as is None or isinstance(bookmark_as, BearerUser)
    assert collection_as is None or isinstance(collection_as, OAuth1User)
    collection = spec.get("collection")
    if collection is not None:
        AddCollectionEntry(collection, "1")  # checks the collection id now, not after the post
    return Then(bookmark_as, collection, collection_as)


def scan_users(path: str | Path) -> tuple[int, dict[str, int]]:
    """Count the lines of a jobs file and the lines per user name (including ``then`` users)."""
    total, per_user = 0, dict[str, int]()
    for _, text in read_lines(path):
        total += 1
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            continue  # parse_line reports it
        if not isinstance(data, dict):
            continue
        names = [data.get("user")]
        then = data.get("then")
        if isinstance(then, dict):
            names += [then.get("bookmark_as"), then.get("collection_as")]
        for name in names:
            if isinstance(name, str):
                per_user[name] = per_user.get(name, 0) + 1
    return total, per_user
