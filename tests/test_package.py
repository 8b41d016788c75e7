"""The package as installed: name and version, data files, and (in CI) that the wheel is what is tested."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import asyncx


def test_the_version_is_written_once_and_every_reader_agrees() -> None:
    """``asyncx.__version__``, the distribution's metadata and ``asyncx --version`` say the same."""
    from asyncx._version import __version__

    assert asyncx.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", __version__)
    assert importlib.metadata.version("asyncx-sdk") == __version__
    shown = subprocess.run(
        [sys.executable, "-m", "asyncx", "--version"], capture_output=True, text=True, check=True, timeout=30
    )
    assert shown.stdout.strip() == f"asyncx {__version__}"


def test_the_distribution_is_asyncx_sdk_and_imports_as_asyncx() -> None:
    """``asyncx`` on the package index is someone else's project: ours is ``asyncx-sdk``."""
    dist = importlib.metadata.distribution("asyncx-sdk")
    assert dist.metadata["Name"] == "asyncx-sdk"
    assert dist.read_text("top_level.txt") in (None, "asyncx\n")
    assert set(importlib.metadata.packages_distributions()["asyncx"]) == {"asyncx-sdk"}


@pytest.mark.parametrize(
    ("package", "pattern"),
    [("asyncx", "py.typed"), ("asyncx._ratelimit", "lua/*.lua"), ("asyncx.bulk", "lua/*.lua")],
)
def test_package_data_is_installed(package: str, pattern: str) -> None:
    """The typing marker and the Redis scripts travel with the package; a wheel without them fails here."""
    folder = Path(str(importlib.resources.files(package)))
    found = sorted(folder.glob(pattern))
    assert found, f"{package}: no {pattern}"
    assert all(p.stat().st_size > 0 or p.name == "py.typed" for p in found)


@pytest.mark.skipif(not os.environ.get("ASYNCX_TEST_INSTALLED"), reason="CI's wheel run sets it")
def test_ci_tests_the_installed_wheel_not_the_source_tree() -> None:
    """In CI's test sessions ``asyncx`` must come from the wheel in site-packages, not from a checkout."""
    location = Path(asyncx.__file__).resolve()
    assert "site-packages" in location.parts, location
    assert not (location.parent.parent / "pyproject.toml").exists()
