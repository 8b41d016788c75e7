"""A real ``redis-server`` on a free loopback port, for the shared-store tests.

The tests must not be skipped in CI, so a missing ``redis-server`` is an error that says how to get one.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10000 above it) is free too and exists."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            port = random.randrange(20000, 55000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port


class RedisServer:
    """Starts, stops and restarts one ``redis-server`` (no persistence) on 127.0.0.1."""

    def __init__(self, *extra: str) -> None:
        self._extra = extra
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "the shared-store tests need redis-server on PATH: "
                "apt-get update && apt-get install -y redis-server (.ci/run does this)"
            )
        self.binary = binary
        self.port = free_cluster_port() if "--cluster-enabled" in extra else free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="asyncx-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
                *self._extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)  # the server process is starting: nothing to await in this thread
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    @property
    def path(self) -> Path:
        return Path(self._dir.name)


class RedisClusterServers:
    """A local three-node Redis Cluster (no replicas), made as an operator makes one: three
    ``redis-server --cluster-enabled yes``, then ``redis-cli --cluster create``."""

    def __init__(self, nodes: int = 3) -> None:
        self.nodes = [
            RedisServer("--cluster-enabled", "yes", "--cluster-node-timeout", "2000") for _ in range(nodes)
        ]
        self.url = f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("the cluster tests need redis-cli (it comes with redis-server)")
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [cli, "-p", str(node.port), "cluster", "info"], capture_output=True, text=True, timeout=5
                ).stdout
                for node in self.nodes
            ]
            if all("cluster_state:ok" in state for state in states):
                return
            time.sleep(0.1)  # the nodes agree on the slots in their own time: nothing here to await
        raise RuntimeError("the local Redis Cluster did not become ready")

    def close(self) -> None:
        for node in self.nodes:
            node.close()
