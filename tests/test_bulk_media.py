"""Bulk jobs with media: lines name files (relative to the jobs file); ``asyncx post`` uploads them, then
posts. A rerun resumes an upload where it stopped, never uploads again what X still holds, and uploads
again what has expired. ``--dry-run`` checks every file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import asyncx
from asyncx.bulk import run
from asyncx.bulk._jobs import Credentials, UserCredentials, parse_line
from asyncx.testing import FakeX, ManualClock
from tests.test_bulk import _cli, _credentials, _jobs

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 2000
MP4 = b"\0\0\0\x18ftypmp42" + b"\x01" * 5_000_000


def _files(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    for i in range(4):
        (tmp_path / "media" / f"{i}.png").write_bytes(PNG + bytes([i]))
    (tmp_path / "media" / "clip.mp4").write_bytes(MP4)


async def test_a_job_uploads_images_and_a_video_then_posts_them(tmp_path: Path) -> None:
    _files(tmp_path)
    async with FakeX(media_processing=0.0) as fake:
        users = {"ann": fake.users.create("ann")}
        creds = _credentials(tmp_path, fake, users)
        images = [{"path": f"media/{i}.png", "alt_text": f"image {i}"} for i in range(4)]
        jobs = _jobs(
            tmp_path,
            [
                {"user": "ann", "text": "four images", "media": images},
                {"user": "ann", "media": [{"path": "media/clip.mp4"}]},
            ],
        )
        report = tmp_path / "r.json"
        code, _, err = await _cli(
            "post", jobs, "--credentials", creds, "--base-url", fake.base_url, "--report", report
        )
        assert code == 0, err
        posts = sorted(fake.posts.values(), key=lambda p: len(p.media_ids))
        assert [len(p.media_ids) for p in posts] == [1, 4]
        assert [fake.media[m].alt_text for m in posts[1].media_ids] == [f"image {i}" for i in range(4)]
        assert fake.media[posts[0].media_ids[0]].category == "tweet_video"
        summary = json.loads(report.read_text())["summary"]
        assert summary["done"] == 2 and summary["uploads"] == {"uploads": 5, "segments": 3}
        code, _, _ = await _cli("post", jobs, "--credentials", creds, "--base-url", fake.base_url)
        assert code == 0 and len(fake.media) == 5  # done lines upload nothing again


async def test_a_stopped_upload_resumes_and_finished_media_is_not_uploaded_again(tmp_path: Path) -> None:
    _files(tmp_path)
    async with FakeX(media_processing=0.0) as fake:
        ann = fake.users.create("ann")
        creds = Credentials(users={"ann": UserCredentials(bearer=ann.bearer)})
        clip = {"user": "ann", "text": "a clip", "media": [{"path": "media/clip.mp4"}]}
        image = {"user": "ann", "text": "an image", "media": [{"path": "media/0.png"}]}
        items = [parse_line(n, json.dumps(line), creds, base=tmp_path) for n, line in ((1, clip), (2, image))]
        journal = tmp_path / "j.sqlite"
        # X takes the first segment, then fails; the image uploads, then its post fails.
        fake.fail_next(1, 503, endpoint="media_append", after=1)
        fake.fail_next(1, 503, endpoint="create_tweet")
        async with fake.client(retry=None) as client:
            first = [o async for o in run(client, items, journal=journal, concurrency=1)]  # type: ignore[arg-type]
        assert [(o.status, o.retryable) for o in first] == [("failed", True), ("failed", True)]
        async with fake.client(retry=None) as client:
            again = [o async for o in run(client, items, journal=journal, concurrency=1)]  # type: ignore[arg-type]
        assert [o.status for o in again] == ["done", "done"]
        sent = [e.endpoint for e in fake.log if e.status < 300]
        assert sent.count("media_initialize") == 1 and sent.count("media_append") == 3  # none sent twice
        assert sent.count("media_upload") == 1  # the image X still held was attached, not uploaded again
        assert {len(p.media_ids) for p in fake.posts.values()} == {1}


async def test_finished_media_is_uploaded_again_once_it_has_expired(tmp_path: Path) -> None:
    _files(tmp_path)
    clock = ManualClock()

    async def jump(seconds: float) -> None:
        await clock.advance(seconds)

    async with FakeX(clock=clock.time, media_processing=0.0) as fake:
        ann = fake.users.create("ann")
        creds = Credentials(users={"ann": UserCredentials(bearer=ann.bearer)})
        line = {"user": "ann", "text": "an image", "media": [{"path": "media/0.png"}]}
        items = [parse_line(1, json.dumps(line), creds, base=tmp_path)]
        journal = tmp_path / "j.sqlite"
        fake.fail_next(1, 503, endpoint="create_tweet")
        async with fake.client(retry=None, clock=clock.time, sleep=jump) as client:
            assert [o.status async for o in run(client, items, journal=journal)] == ["failed"]  # type: ignore[arg-type]
            await clock.advance(86_400)  # what X held has expired
            assert [o.status async for o in run(client, items, journal=journal)] == ["done"]  # type: ignore[arg-type]
        uploads = [e.endpoint for e in fake.log if e.status < 300].count("media_upload")
        assert uploads == 2
        [post] = fake.posts.values()
        assert fake.now() < fake.media[post.media_ids[0]].expires_at


@pytest.mark.parametrize(
    ("media", "problem"),
    [
        ([{"path": "media/missing.png"}], "cannot read"),
        ([{"path": "jobs.jsonl"}], "not an image, GIF or video"),
        ([{"path": "media/clip.mp4"}, {"path": "media/0.png"}], "one GIF, or one video"),
        ([{"path": f"media/{i % 4}.png"} for i in range(5)], "1 to 4 files"),
        ([{"path": "media/0.png", "alt_text": "x" * 1001}], "1,000 characters"),
        ([{"path": "media/big.png"}], "more than X takes"),
    ],
)
async def test_dry_run_checks_every_file(tmp_path: Path, media: list[object], problem: str) -> None:
    _files(tmp_path)
    (tmp_path / "media" / "big.png").write_bytes(PNG + b"\0" * (5 * 1024 * 1024))
    async with FakeX() as fake:
        users = {"ann": fake.users.create("ann")}
        creds = _credentials(tmp_path, fake, users)
        jobs = _jobs(
            tmp_path, [{"user": "ann", "text": "x", "media": media}, {"user": "ann", "text": "fine"}]
        )
        code, out, err = await _cli(
            "post", jobs, "--credentials", creds, "--base-url", fake.base_url, "--dry-run"
        )
        err = " ".join(err.split())  # the console wraps long lines
        assert code == 1
        assert "line 1:" in err and problem in err and "1 valid line(s), 1 problem(s)" in out
        assert fake.log == [] or all(e.endpoint not in ("media_upload", "create_tweet") for e in fake.log)


def test_asyncx_exports_what_a_job_needs() -> None:
    assert asyncx.UploadSession and asyncx.UploadedMedia


async def test_a_job_killed_mid_upload_resumes_it_on_the_rerun(tmp_path: Path) -> None:
    import asyncio
    import signal
    import sys

    from asyncx.testing import Faults

    _files(tmp_path)
    async with FakeX(media_processing=0.0, faults=Faults(latency=0.3)) as fake:
        users = {"ann": fake.users.create("ann")}
        creds = _credentials(tmp_path, fake, users)
        jobs = _jobs(tmp_path, [{"user": "ann", "text": "a clip", "media": [{"path": "media/clip.mp4"}]}])
        command = [
            "-m",
            "asyncx",
            "post",
            str(jobs),
            "--credentials",
            str(creds),
            "--base-url",
            fake.base_url,
        ]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        while not any(e.endpoint == "media_append" for e in fake.log):
            await asyncio.sleep(0.01)  # polling the fake's log: the child is another process
        proc.send_signal(signal.SIGKILL)  # mid-upload: the second segment is on its way
        await proc.wait()
        code, _, err = await _cli("post", jobs, "--credentials", creds, "--base-url", fake.base_url)
        assert code == 0, err
        appends = [e for e in fake.log if e.endpoint == "media_append"]
        assert [e.endpoint for e in fake.log].count("media_initialize") == 1
        assert len(appends) <= 4  # 3 segments; at most the one on the wire at the kill goes twice
        [post] = fake.posts.values()
        assert fake.media[post.media_ids[0]].state == "succeeded"


async def test_finished_media_is_uploaded_again_when_its_file_changed(tmp_path: Path) -> None:
    _files(tmp_path)
    async with FakeX(media_processing=0.0) as fake:
        ann = fake.users.create("ann")
        creds = Credentials(users={"ann": UserCredentials(bearer=ann.bearer)})
        line = {"user": "ann", "text": "an image", "media": [{"path": "media/0.png"}]}
        items = [parse_line(1, json.dumps(line), creds, base=tmp_path)]
        journal = tmp_path / "j.sqlite"
        fake.fail_next(2, 503, endpoint="create_tweet")
        async with fake.client(retry=None) as client:
            assert [o.status async for o in run(client, items, journal=journal)] == ["failed"]  # type: ignore[arg-type]
            assert [o.status async for o in run(client, items, journal=journal)] == ["failed"]  # type: ignore[arg-type]
            (tmp_path / "media" / "0.png").write_bytes(PNG + b"a new picture")
            assert [o.status async for o in run(client, items, journal=journal)] == ["done"]  # type: ignore[arg-type]
        assert [e.endpoint for e in fake.log if e.status < 300].count("media_upload") == 2


async def test_the_example_job_of_the_readme_checks_clean(tmp_path: Path) -> None:
    """The README's first command runs ``examples/jobs.jsonl`` in the sandbox: every line and file is good."""
    import shutil

    examples = Path(__file__).parent.parent / "examples"
    copy = tmp_path / "examples"
    shutil.copytree(examples, copy, ignore=shutil.ignore_patterns("*.sandbox.*"))
    code, out, err = await _cli("post", copy / "jobs.jsonl", "--sandbox", "--dry-run")
    lines = len((copy / "jobs.jsonl").read_text().splitlines())
    assert code == 0, err
    assert f"{lines} valid line(s), 0 problem(s)" in out


async def test_a_mistyped_secret_stops_that_users_uploads_after_three_refusals(tmp_path: Path) -> None:
    from tests.test_bulk import _mistype

    _files(tmp_path)
    async with FakeX() as fake:
        users = {n: fake.users.create(n) for n in ("ann", "bob")}
        creds = _credentials(tmp_path, fake, users)
        _mistype(creds, "bob")
        lines = [
            {"user": n, "text": f"{n} {i}", "media": [{"path": "media/0.png"}]}
            for i in range(10)
            for n in users
        ]
        jobs = _jobs(tmp_path, lines)
        code, _, err = await _cli("post", jobs, "--credentials", creds, "--base-url", fake.base_url)
        assert code == 1 and "user 'bob': credentials refused (401); 10 line(s) not done" in err
        refused = [e for e in fake.log if e.status == 401]
        assert len(refused) <= 3 and {e.endpoint for e in refused} == {"media_upload"}
        assert len(fake.posts) == 10  # ann's
