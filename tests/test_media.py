"""Media upload v2 end to end against FakeX: one-shot images, chunked video with processing, alt text,
resume after a crash, expiry, and every size and type refusal before a byte is sent."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import attrs
import pytest

import asyncx
from asyncx.testing import FakeX, ManualClock

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 1000
GIF = b"GIF89a" + b"\0" * 3000
MP4 = b"\0\0\0\x18ftypmp42" + b"\x01" * (5 * 1_000_000 + 123)


def _jumping(clock: ManualClock) -> Any:
    """A sleep that moves the manual clock itself: waits cost no time, and the fake sees it pass."""

    async def sleep(seconds: float) -> None:
        await clock.advance(seconds)

    return sleep


def _video(tmp_path: Path, data: bytes = MP4) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    return path


async def test_an_image_goes_in_one_request_with_alt_text_and_a_post_attaches_it() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        async with fake.client() as client:
            media = await client.upload_media(PNG, user=alice.bearer, alt_text="a blank square")
            post = await client.create_tweet(text="look", media={"media_ids": [media.id]}, user=alice.bearer)
        assert (media.media_type, media.media_category) == ("image/png", "tweet_image")
        assert media.media_key == f"3_{media.id}"
        assert fake.media[media.id].alt_text == "a blank square"
        assert fake.posts[post.id].media_ids == (media.id,)
        assert [e.endpoint for e in fake.log] == ["media_upload", "media_metadata", "create_tweet"]


async def test_four_images_from_files_and_file_objects(tmp_path: Path) -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        paths = []
        for i in range(2):
            paths.append(tmp_path / f"{i}.png")
            paths[-1].write_bytes(PNG + bytes([i]))
        async with fake.client() as client:
            ids = [(await client.upload_media(p, user=alice.oauth1)).id for p in paths]
            ids.append((await client.upload_media(io.BytesIO(PNG + b"x"), user=alice.oauth1)).id)
            ids.append((await client.upload_media(PNG + b"y", user=alice.oauth1)).id)
            post = await client.create_tweet(media={"media_ids": ids}, user=alice.oauth1)
        assert fake.posts[post.id].media_ids == tuple(ids)


async def test_a_video_goes_in_segments_and_processing_is_awaited(tmp_path: Path) -> None:
    clock = ManualClock()
    start = clock.time()
    async with FakeX(clock=clock.time, media_processing=7.0) as fake:
        alice = fake.users.create()
        seen: list[asyncx.UploadSession] = []
        async with fake.client(clock=clock.time, sleep=_jumping(clock)) as client:
            media = await client.upload_media(
                _video(tmp_path), user=alice.bearer, progress=seen.append, alt_text="a clip"
            )
            await client.create_tweet(text="watch", media={"media_ids": [media.id]}, user=alice.bearer)
        assert media.media_category == "tweet_video" and media.media_key == f"7_{media.id}"
        assert [s.segments_sent for s in seen] == [0, 1, 2, 3, 3] and seen[-1].finalized
        assert sorted(fake.media[media.id].segments.values()) == [1_000_135, 2_000_000, 2_000_000]
        statuses = [e.endpoint for e in fake.log].count("media_status")
        assert statuses >= 1 and fake.media[media.id].state == "succeeded"
        assert clock.time() >= start + 7.0  # it slept as X told it to, on the injected clock


async def test_a_post_naming_media_still_processing_is_refused_as_x_refuses_it(tmp_path: Path) -> None:
    async with FakeX(media_processing=600.0) as fake:
        alice = fake.users.create()
        async with fake.client() as client:
            session: list[asyncx.UploadSession] = []
            upload = client.upload_media(_video(tmp_path), user=alice.bearer, progress=session.append)
            with pytest.raises(asyncio.TimeoutError):  # TimeoutError itself from 3.11 on
                await asyncio.wait_for(upload, 0.5)
            with pytest.raises(asyncx.APIError) as refused:
                await client.create_tweet(media={"media_ids": [session[-1].media_id]}, user=alice.bearer)
        assert refused.value.status == 400
        assert refused.value.problem is not None and "media" in str(refused.value.body)


async def test_failed_processing_raises_a_typed_error(tmp_path: Path) -> None:
    clock = ManualClock()
    async with FakeX(clock=clock.time) as fake:
        alice = fake.users.create()
        fake.fail_processing()
        async with fake.client(clock=clock.time, sleep=_jumping(clock)) as client:
            with pytest.raises(asyncx.MediaProcessingFailed) as failed:
                await client.upload_media(_video(tmp_path), user=alice.bearer)
        assert failed.value.error["name"] == "InvalidMedia" and failed.value.media_id in fake.media


async def test_a_crashed_upload_resumes_without_resending_what_x_holds(tmp_path: Path) -> None:
    async with FakeX(media_processing=0.0) as fake:
        alice = fake.users.create()
        saved: list[asyncx.UploadSession] = []

        def crash_after_two(session: asyncx.UploadSession) -> None:
            saved.append(session)
            if session.segments_sent == 2:
                raise KeyboardInterrupt  # the process dies here

        async with fake.client() as client:
            with pytest.raises(KeyboardInterrupt):
                await client.upload_media(_video(tmp_path), user=alice.bearer, progress=crash_after_two)
        state = attrs.asdict(saved[-1])  # what a job would have written down
        appended = [e.endpoint for e in fake.log].count("media_append")
        async with fake.client() as client:
            media = await client.upload_media(
                _video(tmp_path), user=alice.bearer, resume=asyncx.UploadSession(**state)
            )
        assert appended == 2 and [e.endpoint for e in fake.log].count("media_append") == 3
        assert [e.endpoint for e in fake.log].count("media_initialize") == 1
        assert media.id == state["media_id"] and fake.media[media.id].state == "succeeded"


async def test_an_expired_session_starts_afresh(tmp_path: Path) -> None:
    clock = ManualClock()
    async with FakeX(clock=clock.time, media_processing=0.0) as fake:
        alice = fake.users.create()
        saved: list[asyncx.UploadSession] = []
        async with fake.client(clock=clock.time, sleep=_jumping(clock)) as client:
            first = await client.upload_media(_video(tmp_path), user=alice.bearer, progress=saved.append)
            await clock.advance(86_400)
            again = await client.upload_media(_video(tmp_path), user=alice.bearer, resume=saved[-1])
        assert again.id != first.id and [e.endpoint for e in fake.log].count("media_initialize") == 2


@pytest.mark.parametrize(
    ("source", "kwargs", "field"),
    [
        (b"not media at all", {}, "media_type"),
        (PNG, {"media_category": "tweet_video"}, "media_type"),
        (PNG + b"\0" * (5 * 1024 * 1024), {}, "source"),
        (GIF + b"\0" * (15 * 1024 * 1024), {}, "source"),
        (b"", {"media_type": "image/png"}, "source"),
        (PNG, {"media_type": "image/tiff"}, "media_type"),
        (PNG, {"media_category": "tweet_picture"}, "media_category"),
        (PNG, {"alt_text": "x" * 1001}, "alt_text"),
        ("/no/such/file.png", {}, "source"),
        (io.StringIO("text"), {}, "source"),
    ],
)
async def test_bad_media_is_refused_before_a_byte_is_sent(
    source: Any, kwargs: dict[str, Any], field: str
) -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        async with fake.client() as client:
            with pytest.raises(asyncx.ValidationError) as refused:
                await client.upload_media(source, user=alice.bearer, **kwargs)
        assert refused.value.field == field
        assert fake.log == [] and client.rate_stats().sent == 0


async def test_fakex_refuses_what_x_refuses_on_the_wire() -> None:
    async with FakeX(media_processing=0.0) as fake:
        alice, bob = fake.users.create(), fake.users.create()
        image, gif = fake.add_media(alice), fake.add_media(alice, media_type="image/gif")
        bobs = fake.add_media(bob)
        async with fake.client() as client:
            for ids in ([image, gif], [bobs], ["123"]):
                with pytest.raises(asyncx.APIError) as refused:
                    await client.create_tweet(media={"media_ids": ids}, user=alice.bearer)
                assert refused.value.status == 400
                assert refused.value.body["errors"][0]["message"] == "Your media IDs are invalid."  # type: ignore[index]
            started = await client.send(
                asyncx._models.InitializeUpload(
                    media_type="video/mp4", total_bytes=10, media_category="tweet_video"
                ),
                user=alice.bearer,
            )
            with pytest.raises(asyncx.APIError, match="Segments do not add up"):
                await client.send(asyncx._models.FinalizeUpload(started.id), user=alice.bearer)
            with pytest.raises(asyncx.APIError):  # another user's upload
                await client.send(asyncx._models.FinalizeUpload(started.id), user=bob.bearer)


async def test_a_failed_segment_is_retried_on_its_own(tmp_path: Path) -> None:
    async with FakeX(media_processing=0.0) as fake:
        alice = fake.users.create()
        fake.fail_next(2, 503, endpoint="media_append", after=1)
        fast = asyncx.RetryPolicy(wait=lambda _: 0.0)
        async with fake.client(retry=fast) as client:
            await client.upload_media(_video(tmp_path), user=alice.bearer)
        appends = [e.status for e in fake.log if e.endpoint == "media_append"]
        assert appends == [200, 503, 503, 200, 200]  # segment 1 three times, the others once


async def test_the_current_post_fields_go_on_the_wire_and_answers_with_new_fields_parse() -> None:
    async with FakeX() as fake:
        alice = fake.users.create()
        async with fake.client() as client:
            await client.create_tweet(
                text="with the 2026 fields",
                community_id="1234",
                made_with_ai=True,
                nullcast=True,
                paid_partnership=True,
                share_with_followers=True,
                reply_settings="verified",
                user=alice.bearer,
            )
            with pytest.raises(asyncx.ValidationError) as both:
                await client.create_tweet(
                    card_uri="card://1", poll={"options": ["a", "b"], "duration_minutes": 5}
                )
            assert both.value.field == "card_uri"  # the second of the two named
            with pytest.raises(asyncx.ValidationError) as edit:
                await client.create_tweet(
                    text="x", edit_options={"previous_post_id": "abc"}, user=alice.bearer
                )
            assert edit.value.field == "edit_options.previous_post_id"
    wire = asyncx.CreateTweet(text="t", edit_options={"previous_post_id": "9"}, made_with_ai=True)
    from asyncx._convert import unstructure

    assert unstructure(wire) == {"text": "t", "edit_options": {"previous_post_id": "9"}, "made_with_ai": True}
    from asyncx._endpoints import _tweet

    answer = {"data": {"id": "5", "text": "t", "edit_history_tweet_ids": ["5"], "a_field_of_2027": {"x": 1}}}
    assert _tweet(answer).id == "5"


async def test_a_file_changed_since_the_crash_is_uploaded_afresh(tmp_path: Path) -> None:
    async with FakeX(media_processing=0.0) as fake:
        alice = fake.users.create()
        saved: list[asyncx.UploadSession] = []

        def crash(session: asyncx.UploadSession) -> None:
            saved.append(session)
            if session.segments_sent == 1:
                raise KeyboardInterrupt

        path = _video(tmp_path)
        async with fake.client() as client:
            with pytest.raises(KeyboardInterrupt):
                await client.upload_media(path, user=alice.bearer, progress=crash)
            path.write_bytes(MP4[:-5] + b"edits")  # the same size, other bytes
            media = await client.upload_media(path, user=alice.bearer, resume=saved[-1])
        assert media.id != saved[-1].media_id
        assert [e.endpoint for e in fake.log].count("media_initialize") == 2
