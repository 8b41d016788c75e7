"""Bulk jobs: asyncx.bulk.run with its SQLite journal, and the ``asyncx post`` command."""

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import tenacity

import asyncx
from asyncx import bulk
from asyncx._cli import main
from asyncx.testing import FakeUser, FakeX
from tests.redis_server import RedisServer


def _items(users: list[FakeUser], per_user: int) -> list[bulk.Item]:
    return [
        bulk.Item(f"post:{u.name}:{i}", asyncx.CreateTweet(text=f"{u.name} says {i}"), u.bearer)
        for u in users
        for i in range(per_user)
    ]


async def test_run_yields_every_outcome_and_a_rerun_resumes_from_the_journal(tmp_path: Path) -> None:
    journal = tmp_path / "job.sqlite"
    async with FakeX() as fake:
        users = [fake.users.create() for _ in range(3)]
        async with fake.client() as client:
            first = [o async for o in bulk.run(client, _items(users, 4), journal=journal, concurrency=5)]
            assert len(first) == 12 and all(o.ok and o.tweet_id and o.attempts == 1 for o in first)
            again = [o async for o in bulk.run(client, _items(users, 4), journal=journal)]
        assert all(o.resumed and o.ok for o in again)
        assert {o.tweet_id for o in again} == {o.tweet_id for o in first}
        assert len(fake.log) == 12  # the rerun sent nothing


async def test_in_flight_at_a_crash_is_settled_on_resume(tmp_path: Path) -> None:
    """A step journaled as "sending" whose post X has: the resend is a duplicate, so it is delivered."""
    async with FakeX() as fake:
        alice = fake.users.create()
        landed = bulk.Item("line:1", asyncx.CreateTweet(text="made it before the crash"), alice.oauth1)
        lost = bulk.Item("line:2", asyncx.CreateTweet(text="never reached X"), alice.oauth1)
        journal = bulk.Journal(tmp_path / "j.sqlite")
        journal.sending(landed.key, landed.digest)
        journal.sending(lost.key, lost.digest)
        fake.add_post("made it before the crash", alice)
        async with fake.client() as client:
            outcomes = {o.key: o async for o in bulk.run(client, [landed, lost], journal=journal)}
        assert (
            outcomes["line:1"].ok
            and outcomes["line:1"].delivered_earlier
            and outcomes["line:1"].tweet_id is None
        )
        assert outcomes["line:2"].ok and outcomes["line:2"].tweet_id is not None
        assert sorted(p.text or "" for p in fake.posts.values()) == [
            "made it before the crash",
            "never reached X",
        ]
        assert journal.counts() == {"done": 2}
        journal.close()  # a journal given to run() stays the caller's to close


async def test_a_changed_item_under_the_same_key_is_sent_anew(tmp_path: Path) -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        async with fake.client() as client:
            one = bulk.Item("line:1", asyncx.CreateTweet(text="first"), alice.bearer)
            two = bulk.Item("line:1", asyncx.CreateTweet(text="edited"), alice.bearer)
            [a] = [o async for o in bulk.run(client, [one], journal=tmp_path / "j")]
            [b] = [o async for o in bulk.run(client, [two], journal=tmp_path / "j")]
        assert not b.resumed and a.tweet_id != b.tweet_id


async def test_failures_are_typed_and_then_steps_follow_the_post(tmp_path: Path) -> None:
    async with FakeX() as fake:
        alice, bob = fake.users.create(), fake.users.create()
        fake.add_post("dup", alice)
        items = [
            bulk.Item("a", asyncx.CreateTweet(text="dup"), alice.oauth1),
            bulk.Item(
                "b",
                asyncx.CreateTweet(text="new"),
                alice.oauth1,
                bulk.Then(bookmark_as=bob.bearer, collection="custom-5"),
            ),
        ]
        async with fake.client() as client:
            outcomes = {o.key: o async for o in bulk.run(client, items)}
        assert outcomes["a"].status == "failed" and outcomes["a"].error_type == "DuplicateContent"
        assert not outcomes["a"].retryable
        steps = outcomes["b"].steps
        assert [(s.action, s.status) for s in steps] == [
            ("bookmark", "done"),
            ("add_collection_entry", "done"),
        ]
        assert fake.bookmarks[bob.user_id] == {outcomes["b"].tweet_id}
        assert fake.collections["custom-5"] == [outcomes["b"].tweet_id]


async def test_items_are_read_only_as_room_frees_up() -> None:
    """Memory stays flat: run() pulls items lazily, at most ``concurrency`` ahead, from a queue."""
    async with FakeX(limits={"create_tweet": asyncx.RateLimit(1000, 60.0)}) as fake:
        alice = fake.users.create()
        queue: asyncio.Queue[bulk.Item | None] = asyncio.Queue()
        pulled = 0

        async def feed() -> AsyncIterator[bulk.Item]:
            nonlocal pulled
            while (item := await queue.get()) is not None:
                pulled += 1
                yield item

        for i in range(50):
            queue.put_nowait(bulk.Item(f"q{i}", asyncx.CreateTweet(text=f"queued {i}"), alice.bearer))
        async with fake.client() as client:
            outcomes = bulk.run(client, feed(), concurrency=4)
            first = await outcomes.__anext__()
            assert first.ok and pulled <= 4 + 1 + 4  # in flight, one being read, results not yet taken
            queue.put_nowait(None)
            rest = [o async for o in outcomes]
        assert len(rest) == 49 and len(fake.posts) == 50


# -- the command -------------------------------------------------------------------------------------


def _jobs(tmp_path: Path, lines: list[object]) -> Path:
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def _credentials(tmp_path: Path, fake: FakeX, users: dict[str, FakeUser]) -> Path:
    lines = [
        "[app]",
        f'consumer_key = "{fake.consumer_key}"',
        f'consumer_secret = "{fake.consumer_secret}"',
        f'client_id = "{fake.client_id}"',
    ]
    for name, u in users.items():
        lines += [
            f"[users.{name}]",
            f'access_token = "{u.oauth1.access_token}"',
            f'access_token_secret = "{u.oauth1.access_token_secret}"',
            f'bearer_token = "{u.bearer.access_token}"',
            f'user_id = "{u.user_id}"',
            f'refresh_token = "{u.bearer.refresh_token}"',
        ]
    path = tmp_path / "asyncx.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def _cli(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``asyncx ...`` in a child process (``env``: its whole environment); exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asyncx",
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_sandbox_runs_a_job_with_report(tmp_path: Path) -> None:
    jobs = _jobs(
        tmp_path,
        [
            {"user": "ann", "text": "one", "then": {"bookmark_as": "ben", "collection": "custom-1"}},
            {"user": "ben", "text": "two"},
            {"action": "bookmark", "user": "ben", "tweet_id": "1"},
        ],
    )
    report = tmp_path / "report.json"
    code = main(["post", str(jobs), "--sandbox", "--report", str(report)])
    data = json.loads(report.read_text())
    by_line = {entry["line"]: entry for entry in data["lines"]}
    assert by_line[1]["status"] == "done" and [s["status"] for s in by_line[1]["steps"]] == ["done", "done"]
    assert by_line[3]["status"] == "failed" and by_line[3]["error_type"] == "NotFound"
    # A bookmark of a post that does not exist is not refused for its content: a rerun tries it again.
    assert data["summary"]["done"] == 2 and data["summary"]["not_done"] == 1
    assert code == 1


def test_workers_share_budgets_through_redis(tmp_path: Path, redis_server: RedisServer) -> None:
    jobs = _jobs(tmp_path, [{"user": "ann", "text": f"shared {i}"} for i in range(3)])
    report = tmp_path / "report.json"
    assert main(["post", str(jobs), "--sandbox", "--redis", redis_server.url, "--report", str(report)]) == 0
    assert json.loads(report.read_text())["summary"]["done"] == 3

    async def budget_keys() -> list[bytes]:
        from redis.asyncio import Redis

        redis = Redis.from_url(redis_server.url)
        try:
            return await redis.keys("asyncx:{*}t")  # a user's post budget
        finally:
            await redis.aclose()

    assert asyncio.run(budget_keys())  # the budget lived in Redis


def test_bad_usage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["post", str(tmp_path / "missing.jsonl")]) == 2
    assert "no jobs file" in capsys.readouterr().err
    jobs = _jobs(tmp_path, [{"user": "a", "text": "x"}])
    assert main(["post", str(jobs), "--credentials", str(tmp_path / "nope.toml")]) == 2
    assert main(["post", str(jobs), "--sandbox", "--rate-limit", "create_tweet=lots"]) == 2
    assert main(["post", str(jobs), "--sandbox", "--rate-limit", "delete_tweet=1/1"]) == 2
    assert main(["post", str(jobs), "--sandbox", "--redis", "http://not-redis"]) == 2
    with pytest.raises(SystemExit) as info:
        main(["post"])
    assert info.value.code == 2


def test_dry_run_reports_problems_with_line_numbers_and_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = _jobs(
        tmp_path,
        [
            {"user": "ann", "text": "fine"},
            {"user": "ann", "text": "x" * 281},
            "{broken",
            {"user": "zed", "text": "who?"},
            {"action": "bookmark", "user": "ann", "tweet_id": "12"},
            {"action": "fly", "user": "ann"},
        ],
    )
    creds = tmp_path / "c.toml"
    creds.write_text(
        '[app]\nconsumer_key = "k"\nconsumer_secret = "s"\n[users.ann]\naccess_token = "1-a"\n'
        'access_token_secret = "b"\n'
    )
    code = main(
        ["post", str(jobs), "--credentials", str(creds), "--dry-run", "--base-url", "https://127.0.0.1:9"]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "line 2: text: weighted length 281 exceeds 280" in captured.err
    assert "line 3: not JSON" in captured.err
    assert "line 4: user 'zed' has no credentials" in captured.err
    assert "user 'zed' has no credentials: its 1 line(s) will be skipped" in captured.err.replace("\n", " ")
    assert "line 5: user 'ann' has no OAuth 2.0" in captured.err
    assert "line 6: unknown action 'fly'" in captured.err
    assert "1 valid line(s), 6 problem(s)" in captured.out  # five lines, and X unreachable
    assert "https://127.0.0.1:9: unreachable" in captured.err
    assert "k" not in captured.out.split() and "1-a" not in captured.err


async def test_invalid_lines_and_missing_users_skipped_the_rest_proceed(tmp_path: Path) -> None:
    async with FakeX() as fake:
        users = {"ann": fake.users.create("ann")}
        creds = _credentials(tmp_path, fake, users)
        jobs = _jobs(
            tmp_path,
            [
                {"user": "ann", "text": "a"},
                {"user": "ann", "text": ""},
                {"user": "ghost", "text": "b"},
                {"user": "ann", "text": "c"},
            ],
        )
        report = tmp_path / "r.json"
        code, _, err = await _cli(
            "post", jobs, "--credentials", creds, "--base-url", fake.base_url, "--report", report
        )
        assert code == 1
        assert "user 'ghost' has no credentials" in err
        assert sorted(p.text or "" for p in fake.posts.values()) == ["a", "c"]
        statuses = {e["line"]: e["status"] for e in json.loads(report.read_text())["lines"]}
        assert statuses == {1: "done", 2: "invalid", 3: "invalid", 4: "done"}
        assert fake.users["ann"].oauth1.access_token_secret not in err + report.read_text()


async def test_all_done_exits_0_and_secrets_stay_out_of_output(tmp_path: Path) -> None:
    async with FakeX() as fake:
        users = {"ann": fake.users.create("ann")}
        creds = _credentials(tmp_path, fake, users)
        jobs = _jobs(tmp_path, [{"user": "ann", "text": f"t{i}"} for i in range(5)])
        code, out, err = await _cli("post", jobs, "--credentials", creds, "--base-url", fake.base_url)
        assert code == 0 and len(fake.posts) == 5
        for secret in (
            fake.consumer_secret,
            users["ann"].oauth1.access_token_secret,
            users["ann"].bearer.access_token,
        ):
            assert secret not in out + err


def _journaled(journal: Path) -> int:
    if not journal.exists():
        return 0
    with contextlib.closing(sqlite3.connect(journal)) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM steps WHERE state = 'done'").fetchone()[0])
        except sqlite3.OperationalError:  # the table is not there yet
            return 0


async def test_kill_9_mid_run_then_rerun_posts_every_line_exactly_once(tmp_path: Path) -> None:
    limits = {"create_tweet": asyncx.RateLimit(3, 1.0)}
    from asyncx.testing import Faults

    async with FakeX(limits=limits, faults=Faults(latency=0.05, jitter=0.05)) as fake:
        users = {n: fake.users.create(n) for n in ("ann", "ben", "cat")}
        creds = _credentials(tmp_path, fake, users)
        lines = [{"user": n, "text": f"{n} line {i}"} for i in range(8) for n in users]
        jobs = _jobs(tmp_path, lines)
        journal = tmp_path / "jobs.journal.sqlite"
        args = ["-m", "asyncx", "post", str(jobs), "--credentials", str(creds), "--base-url", fake.base_url]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        # Mid-run: some posts made and journaled, more in flight or waiting for budget. (A poll: another
        # process's progress cannot be awaited.)
        while len(fake.posts) < 7 or not _journaled(journal):
            await asyncio.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        done_before = _journaled(journal)
        assert 0 < done_before < len(lines)
        code, _, _ = await _cli("post", jobs, "--credentials", creds, "--base-url", fake.base_url)
        assert code == 0
        texts = [p.text for p in fake.posts.values()]
        assert sorted(texts) == sorted(
            line["text"] for line in lines
        )  # every line once: none lost, none doubled
        with contextlib.closing(sqlite3.connect(journal)) as db:
            states = dict(db.execute("SELECT state, COUNT(*) FROM steps GROUP BY state").fetchall())
        assert states == {"done": len(lines)}


async def test_poison_lines_are_skipped_with_their_line_numbers_and_the_rest_post(tmp_path: Path) -> None:
    """No line, however broken, aborts the job or shows a traceback."""
    async with FakeX() as fake:
        users = {"ann": fake.users.create("ann")}
        creds = _credentials(tmp_path, fake, users)
        good = json.dumps({"user": "ann", "text": "fine"}).encode()
        poison = [
            b'{"user": "ann", "text": "caf\xe9 latin-1"}',  # not UTF-8
            b'{"user": "ann", "text": "lone \\ud800 surrogate"}',
            b'{"user": "ann", "text": "nul \\u0000 inside"}',
            b'{"action": "collection_curate", "user": "ann", "collection": "custom-1", "changes": [null]}',
            b'{"user": "ann", "text": 42}',
            b'["not", "an", "object"]',
            b'{"action": "bookmark", "user": "ann"}',  # no tweet_id
            b'{"user": "ann", "txt": "typo"}',
            b"[" * 100_000,
            b'{"user": "ann", "poll": {"options": ["a", "b"], "duration_minutes": NaN}}',
        ]
        jobs = tmp_path / "jobs.jsonl"
        jobs.write_bytes(b"\n".join([good, *poison, good.replace(b"fine", b"also fine")]) + b"\n")
        report = tmp_path / "r.json"
        code, _, err = await _cli(
            "post", jobs, "--credentials", creds, "--base-url", fake.base_url, "--report", report
        )
        assert code == 1 and "Traceback" not in err
        assert sorted(p.text or "" for p in fake.posts.values()) == ["also fine", "fine"]
        entries = {e["line"]: e for e in json.loads(report.read_text())["lines"]}
        assert [n for n, e in sorted(entries.items()) if e["status"] == "invalid"] == list(range(2, 12))
        assert "not valid UTF-8 (byte 0xe9" in entries[2]["error"]
        assert "U+D800" in entries[3]["error"] and "U+0000" in entries[4]["error"]
        assert "changes[0]" in entries[5]["error"]
        assert "tweet_id: is required" in entries[8]["error"]
        assert "'txt'" in entries[9]["error"] and "unknown field" in entries[9]["error"]
        assert "nested too deeply" in entries[10]["error"]
        assert all("unexpected keyword" not in e["error"] for e in entries.values() if "error" in e)


def test_a_journal_that_cannot_be_opened_is_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = _jobs(tmp_path, [{"user": "ann", "text": "x"}])
    code = main(["post", str(jobs), "--sandbox", "--journal", str(tmp_path / "no" / "such" / "dir.sqlite")])
    err = capsys.readouterr().err
    assert code == 1 and "the journal failed" in err and "dir.sqlite" in err and "Traceback" not in err


def test_a_second_run_on_a_journal_in_use_exits_2_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = _jobs(tmp_path, [{"user": "ann", "text": "x"}])
    journal = tmp_path / "busy.sqlite"
    holder = bulk.Journal(journal)
    try:
        code = main(["post", str(jobs), "--sandbox", "--journal", str(journal)])
    finally:
        holder.close()
    err = capsys.readouterr().err
    assert code == 2 and f"in use by process {os.getpid()}" in err
    assert main(["post", str(jobs), "--sandbox", "--journal", str(journal)]) == 0  # released


def test_the_journal_is_owner_only_and_tokens_survive_in_it(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    path.write_bytes(b"")
    path.chmod(0o644)  # an old journal, world-readable
    journal = bulk.Journal(path)
    journal.save_tokens("1", "access", "refresh")
    journal.close()
    assert path.stat().st_mode & 0o777 == 0o600
    reopened = bulk.Journal(path)
    assert reopened.tokens("1") == ("access", "refresh")
    reopened.close()


def test_no_repr_of_a_request_shows_its_authorization() -> None:
    request = asyncx.WireRequest(
        "POST", "https://x", {"Authorization": "Bearer s3cret"}, b"{}", (("a", "b"),)
    )
    assert "s3cret" not in repr(request) and "<hidden>" in repr(request)


async def _start_and_signal(
    tmp_path: Path, fake: FakeX, jobs: Path, creds: Path, signals: list[int]
) -> tuple[int, float]:
    """Run ``asyncx post`` until it has made some posts, send ``signals``; its exit code and how long
    it took to exit after the first."""
    report = tmp_path / "report.json"
    args = ["-m", "asyncx", "post", str(jobs), "--credentials", str(creds), "--base-url", fake.base_url]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        "--report",
        str(report),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    while len(fake.posts) < 5:  # mid-run (a poll: another process's progress cannot be awaited)
        await asyncio.sleep(0.02)
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    for signum in signals:
        os.kill(proc.pid, signum)
    code = await asyncio.wait_for(proc.wait(), 15)
    return code, loop.time() - sent_at


@pytest.mark.parametrize(
    ("signals", "code"),
    [([signal.SIGTERM], 143), ([signal.SIGINT], 130), ([signal.SIGTERM, signal.SIGTERM], 143)],
    ids=["sigterm", "sigint", "twice"],
)
async def test_a_stop_signal_ends_the_job_with_its_report_and_a_rerun_finishes_it(
    tmp_path: Path, signals: list[int], code: int
) -> None:
    limits = {"create_tweet": asyncx.RateLimit(3, 1.0)}
    async with FakeX(limits=limits) as fake:
        users = {n: fake.users.create(n) for n in ("ann", "ben")}
        creds = _credentials(tmp_path, fake, users)
        lines = [{"user": n, "text": f"{n} line {i}"} for i in range(6) for n in users]
        jobs = _jobs(tmp_path, lines)
        exit_code, took = await _start_and_signal(tmp_path, fake, jobs, creds, signals)
        assert exit_code == code and took < 8.0
        report = json.loads((tmp_path / "report.json").read_text())  # valid JSON, whatever the stop
        if len(signals) == 1:
            assert report["summary"]["stopped_by"] == signal.Signals(signals[0]).name
            done = [e for e in report["lines"] if e["status"] == "done"]
            assert 0 < len(done) < len(lines)
            # Lines read but not sent (they waited for budget) end unsent, to be sent by the rerun.
            assert {e.get("error_type") for e in report["lines"] if e not in done} == {"ClientClosed"}
        rerun, _, _ = await _cli("post", jobs, "--credentials", creds, "--base-url", fake.base_url)
        assert rerun == 0
        assert sorted(p.text for p in fake.posts.values()) == sorted(line["text"] for line in lines)


def _mistype(creds: Path, *names: str) -> None:
    """Break the OAuth 1.0a secret and the bearer token of some users in a credentials file."""
    lines, current = [], None
    for line in creds.read_text().splitlines():
        if line.startswith("[users."):
            current = line[len("[users.") : -1]
        if current in names and line.startswith(("access_token_secret", "bearer_token")):
            line = line[:-1] + 'typo"'
        lines.append(line)
    creds.write_text("\n".join(lines) + "\n")


async def test_refused_credentials_stop_early_are_named_and_a_rerun_after_the_fix_finishes(
    tmp_path: Path,
) -> None:
    async with FakeX() as fake:
        users = {n: fake.users.create(n) for n in ("ann", "cat", "dan")}
        creds = _credentials(tmp_path, fake, users)
        good = tmp_path / "good.toml"
        good.write_text(creds.read_text())
        _mistype(creds, "cat", "dan")
        lines = [{"user": n, "text": f"{n} {i}"} for i in range(10) for n in users]
        lines.append({"user": "ann", "text": "then", "then": {"bookmark_as": "cat"}})
        jobs = _jobs(tmp_path, lines)
        report = tmp_path / "r.json"
        args = ["--base-url", fake.base_url, "--report", report]
        code, _, err = await _cli("post", jobs, "--credentials", creds, *args)
        assert code == 1
        for name in ("cat", "dan"):
            assert sum(1 for e in fake.log if e.user_id == users[name].user_id and e.status == 401) <= 3
            assert f"user '{name}': credentials refused (401)" in err
        summary = json.loads(report.read_text())["summary"]
        # cat's OAuth 2.0 token is mistyped too, but its refresh token is not: the bookmark step is done.
        assert summary["credentials_refused"] == {"cat": 10, "dan": 10}
        assert fake.bookmarks[users["cat"].user_id]
        made = len(fake.posts)
        assert made == 11  # ann's lines, the "then" post included
        code, _, _ = await _cli("post", jobs, "--credentials", good, *args)
        assert code == 0
        assert sorted(p.text for p in fake.posts.values()) == sorted(line["text"] for line in lines)
        assert fake.bookmarks[users["cat"].user_id]  # the step was done without posting again


async def test_a_mended_oauth2_call_does_not_clear_the_users_oauth1_refusals() -> None:
    # cat's OAuth 1.0a secret is wrong; their OAuth 2.0 token is stale but refreshes. The bookmark that
    # succeeds after a refresh says nothing of the OAuth 1.0a secret: cat's posts still stop after three.
    async with FakeX() as fake:
        ann, cat = fake.users.create("ann"), fake.users.create("cat")
        async with fake.client() as client:
            target = await client.send(asyncx.CreateTweet(text="to bookmark"), user=ann.oauth1)
            broken = asyncx.OAuth1User(cat.oauth1.access_token, "typo-" + cat.oauth1.access_token_secret)
            stale = asyncx.BearerUser(
                "stale-token", cat.user_id, refresh_token=cat.bearer.refresh_token, client_id=fake.client_id
            )
            posts = [bulk.Item(f"line:{i}", asyncx.CreateTweet(text=f"cat {i}"), broken) for i in range(8)]
            mark = bulk.Item("mark", asyncx.Bookmark(tweet_id=target.id), stale)
            items = [*posts[:2], mark, *posts[2:]]
            outcomes = {o.key: o async for o in bulk.run(client, items, concurrency=1)}
        assert outcomes["mark"].status == "done"
        refused = [e for e in fake.log if e.endpoint == "create_tweet" and e.status == 401]
        assert len(refused) == 3
        kinds = [outcomes[f"line:{i}"].error_type for i in range(8)]
        assert kinds == ["Unauthorized"] * 3 + ["CredentialsRefused"] * 5


async def test_every_user_refused_stops_the_job_at_once_with_one_message(tmp_path: Path) -> None:
    async with FakeX() as fake:
        users = {n: fake.users.create(n) for n in ("ann", "ben")}
        creds = _credentials(tmp_path, fake, users)
        creds.write_text(creds.read_text().replace(fake.consumer_secret, "wrong-app-secret"))
        jobs = _jobs(tmp_path, [{"user": n, "text": f"{n} {i}"} for i in range(50) for n in ("ann", "ben")])
        code, _, err = await _cli(
            "post", jobs, "--credentials", creds, "--base-url", fake.base_url, "--concurrency", "4"
        )
        assert code == 1 and "every user's credentials were refused" in err
        assert len(fake.log) <= 2 * 3 + 4  # a handful each, and what was on the wire
        assert fake.consumer_secret not in err


async def test_only_content_refusals_stay_failed_and_retry_failed_sends_them_again(tmp_path: Path) -> None:
    async with FakeX() as fake:
        users = {"ann": fake.users.create("ann")}
        creds = _credentials(tmp_path, fake, users)
        jobs = _jobs(
            tmp_path,
            [
                {"user": "ann", "text": "fine"},
                {"user": "ann", "text": "a reply", "reply": {"in_reply_to_tweet_id": "123"}},
            ],
        )
        args = ["--credentials", creds, "--base-url", fake.base_url]
        assert (await _cli("post", jobs, *args))[0] == 1
        assert len(fake.log) == 2
        assert (await _cli("post", jobs, *args))[0] == 1
        assert len(fake.log) == 2  # refused for its content: not sent again by a plain rerun
        assert (await _cli("post", jobs, *args, "--retry-failed"))[0] == 1
        assert len(fake.log) == 3 and fake.log[-1].status == 403  # sent again, and "fine" was not


async def test_editing_the_jobs_file_never_resends_or_misreports_another_line(tmp_path: Path) -> None:
    """A finished job; then a line inserted at the top, one deleted in the middle, two swapped."""
    async with FakeX() as fake:
        users = {"ann": fake.users.create("ann")}
        creds = _credentials(tmp_path, fake, users)
        lines: list[object] = [{"user": "ann", "text": f"post {i}"} for i in range(20)]
        jobs = _jobs(tmp_path, lines)
        args = ["--credentials", creds, "--base-url", fake.base_url]
        assert (await _cli("post", jobs, *args))[0] == 0
        edited = [{"user": "ann", "text": "a new first line"}, *lines[:9], *lines[10:]]
        edited[3], edited[4] = edited[4], edited[3]
        _jobs(tmp_path, edited)
        report = tmp_path / "r.json"
        assert (await _cli("post", jobs, *args, "--report", report))[0] == 0
        assert len(fake.log) == 21  # only the new line was sent
        entries = json.loads(report.read_text())["lines"]
        resumed = {e["line"] for e in entries if e.get("resumed")}
        assert resumed == set(range(2, 21)) and {e["line"] for e in entries} == set(range(1, 21))


async def test_a_journal_keyed_by_line_number_is_migrated(tmp_path: Path) -> None:
    """A journal from before line identities: its records follow their lines wherever they now are."""
    from asyncx.bulk._jobs import old_digest

    async with FakeX() as fake:
        users = {"ann": fake.users.create("ann")}
        creds = _credentials(tmp_path, fake, users)
        lines = [{"user": "ann", "text": f"old {i}"} for i in range(3)]
        journal = tmp_path / "jobs.journal.sqlite"
        with contextlib.closing(sqlite3.connect(journal)) as db:
            db.executescript(
                "CREATE TABLE steps (key TEXT PRIMARY KEY, digest TEXT NOT NULL, state TEXT NOT NULL, "
                "attempts INTEGER NOT NULL DEFAULT 0, result TEXT, updated REAL NOT NULL);"
                "CREATE TABLE tokens (user_id TEXT PRIMARY KEY, access_token TEXT NOT NULL, "
                "refresh_token TEXT);"
            )
            for n, line in enumerate(lines, 1):
                fake.add_post(line["text"], users["ann"])
                db.execute(
                    "INSERT INTO steps VALUES (?, ?, 'done', 1, ?, 0)",
                    (f"line:{n}", old_digest(json.dumps(line)), json.dumps({"tweet_id": "1"})),
                )
            db.commit()
        jobs = _jobs(tmp_path, [{"user": "ann", "text": "inserted"}, *lines])
        code, _, err = await _cli("post", jobs, "--credentials", creds, "--base-url", fake.base_url)
        assert code == 0 and "re-keyed 3 line(s)" in err
        assert [e.status for e in fake.log] == [201]  # only the inserted line was sent


def test_line_keys_are_ids_or_content_with_occurrence() -> None:
    from asyncx.bulk._jobs import LineKeys, content_digest

    keys = LineKeys()
    same = content_digest({"user": "a", "text": "x"})
    assert same == content_digest({"text": "x", "user": "a"})  # key order does not matter
    first, second = keys.key(1, None, same), keys.key(2, None, same)
    assert (
        isinstance(first, str) and first.endswith(":1") and isinstance(second, str) and second.endswith(":2")
    )
    assert keys.key(3, "order-7", same) == "id:order-7"
    assert not isinstance(keys.key(4, "order-7", same), str)  # an id used twice is a problem


def test_line_keys_count_occurrences_exactly_past_many_resizes() -> None:
    """The compact table behind ``LineKeys`` agrees with a dict, however full it has grown."""
    import random

    from asyncx.bulk._jobs import _DigestTable

    rng = random.Random(5)
    pool = [rng.randbytes(12) for _ in range(6000)]
    table, seen, firsts = _DigestTable(), set(), {}
    ids = _DigestTable(with_values=True)
    for number in range(1, 20001):
        digest = rng.choice(pool)
        assert table.add(digest) == (digest not in seen)
        seen.add(digest)
        assert ids.setdefault(digest, number) == firsts.setdefault(digest, number)


async def test_text_less_posts_land_exactly_once_through_lost_answers_and_a_kill(tmp_path: Path) -> None:
    """Polls have no duplicate check to fall back on: lost answers and a SIGKILL must not double them."""
    from asyncx.testing import Faults

    limits = {"create_tweet": asyncx.RateLimit(4, 1.0)}
    async with FakeX(limits=limits, faults=Faults(drop_rate=0.15, latency=0.02), seed=7) as fake:
        users = {n: fake.users.create(n) for n in ("ann", "ben", "cat")}
        creds = _credentials(tmp_path, fake, users)
        lines = [
            {"user": n, "poll": {"options": [f"{n} {i} yes", "no"], "duration_minutes": 60}}
            for i in range(6)
            for n in users
        ]
        jobs = _jobs(tmp_path, lines)
        journal = tmp_path / "jobs.journal.sqlite"
        args = ["-m", "asyncx", "post", str(jobs), "--credentials", str(creds), "--base-url", fake.base_url]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        while len(fake.posts) < 6 or not _journaled(journal):  # mid-run (a poll on another process)
            await asyncio.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        fake.faults = Faults()
        code, _, _ = await _cli("post", jobs, "--credentials", creds, "--base-url", fake.base_url)
        assert code == 0
        made = sorted(p.poll_options[0] for p in fake.posts.values())
        assert made == sorted(line["poll"]["options"][0] for line in lines)  # each once: none lost or doubled


async def test_a_post_whose_delivery_cannot_be_settled_ends_unknown_and_waits_for_resend_unknown(
    tmp_path: Path,
) -> None:
    posts: list[str] = []

    async def handler(request: asyncx.WireRequest) -> asyncx.Response:
        if request.method == "GET":  # no read access
            return asyncx.Response(403, {}, b'{"title": "Forbidden", "detail": "no"}')
        posts.append(request.url)
        raise asyncx.TransportError("connection reset after the request was written", maybe_delivered=True)

    bob = asyncx.BearerUser(access_token="t", user_id="42")
    item = bulk.Item("poll", asyncx.CreateTweet(poll={"options": ["a", "b"], "duration_minutes": 5}), bob)
    journal = tmp_path / "j.sqlite"
    no_wait = asyncx.RetryPolicy(wait=tenacity.wait_none())
    async with asyncx.Client(transport=asyncx.MockTransport(handler), retry=no_wait, read_lag=0) as client:
        [first] = [o async for o in bulk.run(client, [item], journal=journal)]
        assert first.status == "unknown" and first.error_type == "DeliveryUnknown" and len(posts) == 1
        [again] = [o async for o in bulk.run(client, [item], journal=journal)]
        assert again.status == "unknown" and again.resumed and len(posts) == 1  # not sent again
        [forced] = [o async for o in bulk.run(client, [item], journal=journal, resend_unknown=True)]
        assert len(posts) == 2 and forced.error_type == "DeliveryUnknown"


async def test_dry_run_is_a_full_rehearsal_that_says_what_the_journal_skips(tmp_path: Path) -> None:
    async with FakeX() as fake:
        users = {n: fake.users.create(n) for n in ("ann", "ben")}
        creds = _credentials(tmp_path, fake, users)
        lines: list[object] = [{"user": "ann", "text": f"post {i}"} for i in range(5)]
        lines.append({"user": "ben", "text": "see https://example.com", "then": {"bookmark_as": "ann"}})
        jobs = _jobs(tmp_path, lines)
        base = ["--credentials", creds, "--base-url", fake.base_url]
        assert (await _cli("post", jobs, *base))[0] == 0
        sent = len(fake.log)
        _jobs(tmp_path, [*lines, {"user": "ben", "text": "then to nobody", "then": {"bookmark_as": "zed"}}])
        code, out, err = await _cli(
            "post", jobs, *base, "--dry-run", "--price", "post=0.01", "--redis", "redis://127.0.0.1:1/0"
        )
        assert len(fake.log) == sent  # nothing was sent
        assert code == 1
        assert "line 7: user 'zed' has no credentials" in err  # a then step's user is checked too
        assert "unreachable" in err and "redis://127.0.0.1:1/0" in err
        assert f"{fake.base_url}: reachable" in out
        assert "6 of them over: they would be skipped" in out
        assert "would send 0 post(s)" in out


async def test_dry_run_estimates_the_least_time_and_the_cost(tmp_path: Path) -> None:
    async with FakeX() as fake:
        users = {n: fake.users.create(n) for n in ("ann", "ben")}
        creds = _credentials(tmp_path, fake, users)
        lines: list[object] = [{"user": "ann", "text": f"post {i}"} for i in range(250)]
        lines.append({"user": "ben", "text": "see https://example.com"})
        jobs = _jobs(tmp_path, lines)
        code, out, _ = await _cli(
            "post", jobs, "--credentials", creds, "--base-url", fake.base_url, "--dry-run"
        )
        assert code == 0 and len(fake.log) == 0
        assert "would send 251 post(s) (1 with a URL), 0 bookmark(s)" in out
        assert "least time the rate windows allow: 1,800 s" in out  # 250 posts at 100 per 15 minutes
        assert "$3.95" in out  # 250 x 0.015 + 0.20


def test_help_is_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    """No raw markup (``code`` or [rich] tags) in what --help prints."""
    with pytest.raises(SystemExit):
        main(["post", "--help"])
    text = capsys.readouterr().out
    assert "``" not in text and "[/" not in text and "--resend-unknown" in text and "exit codes" in text


async def test_the_sandbox_keeps_its_fake_state_so_a_stopped_job_resumes(tmp_path: Path) -> None:
    lines = [{"user": "ann", "text": f"sandbox {i}"} for i in range(8)]
    jobs = _jobs(tmp_path, lines)
    journal = tmp_path / "jobs.sandbox.journal.sqlite"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asyncx",
        "post",
        str(jobs),
        "--sandbox",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    while _journaled(journal) < 5:  # the first window's posts are in (a poll on another process)
        await asyncio.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 15) == 130
    code, _, err = await _cli("post", jobs, "--sandbox")
    assert code == 0 and "resumed from" in err
    state = json.loads((tmp_path / "jobs.sandbox.journal.fake.json").read_text())
    assert sorted(p["text"] for p in state["posts"]) == sorted(line["text"] for line in lines)


async def test_a_2xx_without_an_id_ends_its_line_delivered_with_the_id_unknown(tmp_path: Path) -> None:
    sent: list[str] = []

    async def handler(request: asyncx.WireRequest) -> asyncx.Response:
        sent.append(request.method)
        return asyncx.Response(201, {}, b'{"data": {"text": "no id here"}}')

    bob = asyncx.BearerUser(access_token="t", user_id="42")
    item = bulk.Item("odd", asyncx.CreateTweet(text="hello"), bob)
    async with asyncx.Client(transport=asyncx.MockTransport(handler)) as client:
        [outcome] = [o async for o in bulk.run(client, [item], journal=tmp_path / "j.sqlite")]
        [again] = [o async for o in bulk.run(client, [item], journal=tmp_path / "j.sqlite")]
    assert outcome.status == "done" and outcome.tweet_id is None and "id unknown" in (outcome.error or "")
    assert again.resumed and sent == ["POST"]  # delivered: never sent again


def test_the_journal_keeps_when_a_step_first_went_out(tmp_path: Path) -> None:
    """A read that settles a resumed post without text must start at its first attempt, not its last."""
    journal = bulk.Journal(tmp_path / "j.sqlite")
    journal.sending("k", "d")
    first = journal.get("k", "d")
    assert first is not None and first.first_sent is not None
    journal.finish("k", "unknown", 3, {})
    journal.sending("k", "d")
    again = journal.get("k", "d")
    assert again is not None and again.first_sent == first.first_sent
    journal.close()


async def test_a_batched_journal_still_records_each_step_before_its_request_goes_out(tmp_path: Path) -> None:
    """Steps that start together share one transaction; none is sent before its record is on disk."""
    path = tmp_path / "j.sqlite"
    unrecorded: list[str] = []

    async def handler(request: asyncx.WireRequest) -> asyncx.Response:
        text = json.loads(request.body or b"{}")["text"]
        with contextlib.closing(sqlite3.connect(path)) as db:  # another connection: what is on disk
            row = db.execute("SELECT state FROM steps WHERE key = ?", (text,)).fetchone()
        if row is None or row[0] != "sending":
            unrecorded.append(text)
        return asyncx.Response(201, {}, json.dumps({"data": {"id": "1", "text": text}}).encode())

    bob = asyncx.BearerUser(access_token="t", user_id="42")
    items = [bulk.Item(f"k{i}", asyncx.CreateTweet(text=f"k{i}"), bob) for i in range(60)]
    limits = {"create_tweet": asyncx.RateLimit(1000, 900)}
    async with asyncx.Client(transport=asyncx.MockTransport(handler), rate_limits=limits) as client:
        outcomes = [o async for o in bulk.run(client, items, journal=path, concurrency=20)]
    assert len(outcomes) == 60 and unrecorded == []
    assert _journaled(path) == 60  # every outcome written by the time the run ends
