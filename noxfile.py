"""The project's task runner: every check CI runs, runnable one at a time by anyone.

    nox -s lint          ruff and mypy, with the pinned tools
    nox -s build         the sdist and the wheel into dist/, checked by twine
    nox -s tests         the suite on every Python 3.10-3.13 found, against the built wheel
    nox -s lowest        the suite on the lowest supported dependencies (Python 3.10)
    nox -s docs          the docs site, ``mkdocs build --strict``
    nox -s latest        the suite on whatever resolves today (not pinned, so it does not gate CI)
    nox -s lock          rewrite the pinned constraints from pyproject.toml

Every session installs from ``constraints.txt`` (``constraints-lowest.txt`` for ``lowest``), so a fresh
machine next month runs the same tools as CI did today. The test sessions install the wheel that ``build``
made, not the source tree, and run the suite from a copy of ``tests/`` outside it: a wheel missing its Lua
scripts or ``py.typed`` fails here.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nox

ROOT = Path(__file__).parent
DIST = ROOT / "dist"
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
LOCK = "constraints.txt"
LOWEST_LOCK = "constraints-lowest.txt"

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "build", "tests", "lowest", "docs"]
nox.options.error_on_missing_interpreters = False


def _wheel() -> str:
    wheels = sorted(DIST.glob("asyncx_sdk-*.whl"))
    if not wheels:
        raise RuntimeError("no wheel in dist/: run `nox -s build` first")
    return str(wheels[-1])


@contextlib.contextmanager
def _outside_the_tree(session: nox.Session) -> Iterator[None]:
    """Work in a copy of ``tests/`` outside the checkout, so ``import asyncx`` finds the installed one."""
    with tempfile.TemporaryDirectory(prefix="asyncx-tests-") as tmp:
        work = Path(tmp)
        # The tests find the example job, the docs and the Node client beside them, as in a checkout.
        shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "examples", work / "examples", ignore=shutil.ignore_patterns("*.sandbox.*"))
        shutil.copytree(ROOT / "docs", work / "docs")
        shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
        session.chdir(work)
        yield
        session.chdir(ROOT)


def _run_suite(session: nox.Session, lock: str) -> None:
    """Install ``lock`` and the built wheel, then run the README's test command outside the source tree."""
    session.install("-r", lock)
    session.install("--no-deps", "--reinstall", _wheel())
    with _outside_the_tree(session):
        session.run("python", "-m", "pytest", *session.posargs, env={"ASYNCX_TEST_INSTALLED": "1"})


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and ``mypy --strict`` on the package, with the pinned tools."""
    session.install("-r", LOCK)
    session.install("--no-deps", "-e", ".")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python="3.11")
def build(session: nox.Session) -> None:
    """Build the sdist and the wheel into dist/ and check their metadata with twine."""
    session.install("-r", LOCK)
    shutil.rmtree(DIST, ignore_errors=True)
    # --no-isolation: the build backend is the pinned setuptools installed above, not today's newest.
    session.run("python", "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(DIST), ".")
    session.run("twine", "check", "--strict", *(str(p) for p in sorted(DIST.iterdir())))
    _check_sdist()


#: What an sdist must carry to run the suite and build the docs from it (MANIFEST.in puts them there).
SDIST_NEEDS = (
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/strategies.py",
    "tests/redis_server.py",
    "examples/jobs.jsonl",
    "docs/index.md",
    "mkdocs.yml",
    "constraints.txt",
    "CHANGELOG.md",
    "LICENSE",
    "asyncx/py.typed",
    "asyncx/_ratelimit/lua/take.lua",
    "asyncx/bulk/lua/queue_take.lua",
)


def _check_sdist() -> None:
    import tarfile

    (sdist,) = DIST.glob("asyncx_sdk-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = [need for need in SDIST_NEEDS if need not in names]
    if missing:
        raise RuntimeError(f"{sdist.name} lacks {', '.join(missing)}: see MANIFEST.in")
    if any("node_modules" in name or ".sandbox." in name for name in names):
        raise RuntimeError(f"{sdist.name} carries node_modules or a sandbox run's files")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The suite against the built wheel, with the pinned (newest) dependencies."""
    _run_suite(session, LOCK)


@nox.session(python="3.10")
def lowest(session: nox.Session) -> None:
    """The suite against the lowest versions pyproject.toml allows (aiohttp 3.10, attrs 23.1, ...)."""
    _run_suite(session, LOWEST_LOCK)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The docs site from docs/ and the docstrings; warnings (a broken link or reference) fail it."""
    session.install("-r", LOCK)
    session.install("--no-deps", "-e", ".")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))


@nox.session(python="3.11")
def latest(session: nox.Session) -> None:
    """The suite on today's newest releases of everything, unpinned: an early warning, never a gate."""
    session.install(".[test]")
    with _outside_the_tree(session):
        session.run("python", "-m", "pytest", *session.posargs, env={"ASYNCX_TEST_INSTALLED": "1"})


@nox.session(python="3.11")
def lock(session: nox.Session) -> None:
    """Rewrite both constraints files from pyproject.toml (commit them with the change that needs them)."""
    session.install("-c", LOCK, "uv")
    compile_ = ("uv", "pip", "compile", "--quiet", "--python-version", "3.10", "pyproject.toml")
    session.run(*compile_, "--universal", *_extras("test", "lint", "docs", "ci"), "-o", LOCK)
    session.run(*compile_, "--resolution", "lowest-direct", *_extras("test"), "-o", LOWEST_LOCK)


def _extras(*names: str) -> list[str]:
    return [arg for name in names for arg in ("--extra", name)]
