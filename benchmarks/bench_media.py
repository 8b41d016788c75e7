"""Media upload: throughput against raw aiohttp, peak memory, and bytes sent by a killed and rerun job.

1. A video (``--megabytes``, 200 by default) goes to a FakeX in another process, chunked, once with
   ``Client.upload_media`` and once as raw aiohttp multipart requests of the same segments; rounds
   alternate and the best of each is kept. Target: asyncx >= 0.9x raw aiohttp's throughput.
2. Peak Python memory (tracemalloc) while asyncx uploads it. Target: <= 2 segments + 30 MB.
3. A bulk job of 200 lines with an image each is killed (SIGKILL) part way and run again to the end.
   Target: bytes of media FakeX received <= 1.1x the files' bytes.

    python benchmarks/bench_media.py [--megabytes 200 --rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp

import asyncx
from asyncx._upload import DEFAULT_SEGMENT
from asyncx.testing import FakeX

from _support import ServerProcess

MP4_HEAD = b"\0\0\0\x18ftypmp42"


def _video(folder: Path, megabytes: int) -> Path:
    path = folder / "clip.mp4"
    block = os.urandom(1024 * 1024)
    with path.open("wb") as f:
        f.write(MP4_HEAD)
        for _ in range(megabytes):
            f.write(block)
    return path


async def _asyncx(info: dict[str, Any], path: Path) -> float:
    user = info["users"][0]
    who = asyncx.BearerUser(access_token=user["bearer_token"], user_id=user["user_id"])
    context = ssl.create_default_context(cadata=info["ca_certificate"])
    async with asyncx.Client(base_url=info["base_url"], ssl=context) as client:
        start = time.perf_counter()
        await client.upload_media(path, user=who)
        return time.perf_counter() - start


async def _raw(info: dict[str, Any], path: Path) -> float:
    """The same requests by hand: initialize, each segment as multipart, finalize, status until done."""
    user = info["users"][0]
    headers = {"Authorization": f"Bearer {user['bearer_token']}"}
    context = ssl.create_default_context(cadata=info["ca_certificate"])
    base, size = info["base_url"], path.stat().st_size
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        start = time.perf_counter()
        body = {"media_type": "video/mp4", "total_bytes": size, "media_category": "tweet_video"}
        async with session.post(f"{base}/2/media/upload/initialize", json=body, headers=headers) as resp:
            media_id = (await resp.json())["data"]["id"]
        with path.open("rb") as f:
            index = 0
            while chunk := f.read(DEFAULT_SEGMENT):
                form = aiohttp.FormData()
                form.add_field("segment_index", str(index))
                form.add_field("media", chunk, filename="media", content_type="application/octet-stream")
                async with session.post(
                    f"{base}/2/media/upload/{media_id}/append", data=form, headers=headers
                ) as r:
                    assert r.status == 200, await r.text()
                index += 1
        async with session.post(f"{base}/2/media/upload/{media_id}/finalize", headers=headers) as resp:
            info_ = (await resp.json())["data"].get("processing_info") or {}
        while info_.get("state") in ("pending", "in_progress"):
            await asyncio.sleep(info_.get("check_after_secs", 1))
            url = f"{base}/2/media/upload?command=STATUS&media_id={media_id}"
            async with session.get(url, headers=headers) as resp:
                info_ = (await resp.json())["data"].get("processing_info") or {}
        return time.perf_counter() - start


async def throughput(folder: Path, megabytes: int, rounds: int) -> None:
    path = _video(folder, megabytes)
    # No processing delay: it is X's time, not the client's, and it would be the same for both.
    async with ServerProcess("--users", "1", "--media-processing", "0") as server:
        best = {"raw aiohttp": float("inf"), "asyncx": float("inf")}
        for _ in range(rounds):
            best["raw aiohttp"] = min(best["raw aiohttp"], await _raw(server.info, path))
            best["asyncx"] = min(best["asyncx"], await _asyncx(server.info, path))
    size = path.stat().st_size / 1e6
    for name, seconds in best.items():
        print(f"  {name:<12} {size / seconds:7.1f} MB/s  ({seconds:.2f} s for {size:.0f} MB)")
    ratio = best["raw aiohttp"] / best["asyncx"]
    print(f"asyncx / raw aiohttp throughput: {ratio:.2f}x (target >= 0.9x)")


async def peak_memory(folder: Path, megabytes: int) -> None:
    path = folder / "clip.mp4"
    async with FakeX(media_processing=0.0) as fake:
        alice = fake.users.create()
        async with fake.client() as client:
            tracemalloc.start()
            await client.upload_media(path, user=alice.bearer)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    allowed = 2 * DEFAULT_SEGMENT + 30e6
    print(
        f"peak Python memory uploading {megabytes} MB: {peak / 1e6:.1f} MB (target <= {allowed / 1e6:.0f} MB)"
    )


async def killed_job(folder: Path, lines: int = 200, image_bytes: int = 400_000) -> None:
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # the killed client's cut uploads
    images = folder / "images"
    images.mkdir()
    for i in range(lines):
        (images / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(image_bytes))
    jobs = folder / "jobs.jsonl"
    with jobs.open("w") as f:
        for i in range(lines):
            f.write(
                json.dumps({"user": "ann", "text": f"image {i}", "media": [{"path": f"images/{i}.png"}]})
                + "\n"
            )
    async with FakeX(limits={"create_tweet": asyncx.RateLimit(10_000, 900.0)}) as fake:
        ann = fake.users.create("ann")
        creds = folder / "creds.toml"
        creds.write_text(
            f'[app]\nconsumer_key = "{fake.consumer_key}"\nconsumer_secret = "{fake.consumer_secret}"\n'
            f'[users.ann]\nbearer_token = "{ann.bearer.access_token}"\nuser_id = "{ann.user_id}"\n'
        )
        command = [sys.executable, "-m", "asyncx", "post", str(jobs), "--credentials", str(creds)]
        command += ["--base-url", fake.base_url, "--concurrency", "8"]
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        while sum(1 for e in fake.log if e.endpoint == "media_upload") < lines // 2:
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        killed_at = len(fake.posts)
        rerun = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        assert await rerun.wait() == 0
        files = lines * (image_bytes + 8)
        assert len(fake.posts) == lines
    print(
        f"job of {lines} image lines killed after {killed_at} posts, then rerun: FakeX received "
        f"{fake.media_bytes / files:.3f}x the files' bytes (target <= 1.1x)"
    )


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--megabytes", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        segment = DEFAULT_SEGMENT / 1e6
        print(f"throughput, a {args.megabytes} MB video in {segment:.0f} MB segments, best of {args.rounds}:")
        await throughput(folder, args.megabytes, args.rounds)
        await peak_memory(folder, args.megabytes)
        await killed_job(folder)


if __name__ == "__main__":
    asyncio.run(main())
