"""Helpers the benchmarks share: pointing tweepy at a FakeX, and serving FakeX from another process."""

from __future__ import annotations

import asyncio
import compileall
import json
import socket
import ssl
import sys
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

import asyncx


def compile_asyncx() -> None:
    """Write asyncx's bytecode, as installing a wheel does.

    Without it a checkout run with ``PYTHONDONTWRITEBYTECODE`` (as CI machines often are) compiles every
    asyncx module from source in every fresh process, while aiohttp and tweepy load cached bytecode, and a
    startup figure would measure the compiler rather than the import.
    """
    compileall.compile_dir(asyncx.__path__[0], quiet=1)


class PinnedResolver(AbstractResolver):
    """Resolves X's API hosts to a local port, so unmodified clients with hard-coded URLs reach a fake."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=self.port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


def pinned_session(port: int, ca_pem: str, limit: int = 100) -> aiohttp.ClientSession:
    """A session whose connections to api.twitter.com go to ``127.0.0.1:port``, trusting ``ca_pem``."""
    context = ssl.create_default_context(cadata=ca_pem)
    connector = aiohttp.TCPConnector(resolver=PinnedResolver(port), ssl=context, limit=limit)
    return aiohttp.ClientSession(connector=connector)


class ServerProcess:
    """``python -m asyncx.testing`` in a child process, so its CPU is not counted as the client's."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.info: dict[str, Any] = {}
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> ServerProcess:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "asyncx.testing",
            "--port",
            "0",
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,  # its hints for people (the CA path, a curl line)
            limit=64 * 1024 * 1024,  # one JSON line holds every made-up user's credentials
        )
        assert self._proc.stdout is not None
        self.info = json.loads(await asyncio.wait_for(self._proc.stdout.readline(), 60))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            await self._proc.wait()

    @property
    def port(self) -> int:
        return int(self.info["base_url"].rsplit(":", 1)[1])
