"""The pytest plugin's fixtures under the setups people run: pytest-asyncio strict and auto modes, loop
scopes, anyio and pytest-xdist. A fixture used from another event loop than its server's fails at once."""

from __future__ import annotations

import pytest

BODY = """
import pytest
import asyncx

{marker}
async def test_post(x_client, fake_x):
    alice = fake_x.users.create("alice")
    post = await x_client.create_tweet(text="hi", user=alice.oauth1)
    assert fake_x.posts[post.id].text == "hi"
"""


def _run(pytester: pytest.Pytester, ini: str, body: str, *args: str) -> pytest.RunResult:
    pytester.makeini(f"[pytest]\ntimeout = 20\n{ini}\n")
    pytester.makepyfile(test_inner=body)
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", *args)


def test_strict_mode_with_the_asyncio_marker(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "asyncio_mode = strict", BODY.format(marker="@pytest.mark.asyncio"))
    result.assert_outcomes(passed=1)


def test_auto_mode_without_a_marker(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "asyncio_mode = auto", BODY.format(marker=""))
    result.assert_outcomes(passed=1)


def test_a_module_loop_for_tests_and_fixtures_alike(pytester: pytest.Pytester) -> None:
    ini = (
        "asyncio_mode = auto\nasyncio_default_fixture_loop_scope = module\n"
        "asyncio_default_test_loop_scope = module"
    )
    result = _run(pytester, ini, BODY.format(marker=""))
    result.assert_outcomes(passed=1)


def test_a_test_on_another_loop_than_the_fixtures_fails_at_once_saying_why(pytester: pytest.Pytester) -> None:
    ini = "asyncio_mode = auto\nasyncio_default_fixture_loop_scope = function"
    result = _run(
        pytester, ini, BODY.format(marker='@pytest.mark.asyncio(loop_scope="module")'), "--durations=1"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*UsageError: FakeX runs on another event loop than this call*loop scope*"])
    assert "Timeout" not in result.stdout.str() and "TransportError" not in result.stdout.str()


ANYIO = """
import pytest
from asyncx.testing import FakeX

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.anyio
async def test_fixture_from_pytest_asyncio(x_client, fake_x):
    alice = fake_x.users.create("alice")
    await x_client.create_tweet(text="hi", user=alice.oauth1)

@pytest.mark.anyio
async def test_fake_started_in_the_test():
    async with FakeX() as fake:
        alice = fake.users.create("alice")
        async with fake.client() as client:
            await client.create_tweet(text="hi", user=alice.oauth1)
        assert len(fake.posts) == 1
"""


def test_anyio_tests_fail_fast_on_the_asyncio_fixtures_and_work_with_their_own_fake(
    pytester: pytest.Pytester,
) -> None:
    result = _run(pytester, "asyncio_mode = auto", ANYIO)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*UsageError: FakeX runs on another event loop*", "FAILED *test_fixture_from_pytest_asyncio*"]
    )


def test_under_xdist_each_worker_has_its_own_fake(pytester: pytest.Pytester) -> None:
    body = BODY.format(marker="") + BODY.format(marker="").replace("test_post", "test_post_again")
    result = _run(pytester, "asyncio_mode = auto", body, "-n", "2")
    result.assert_outcomes(passed=2)


async def test_an_ipv6_fake_has_a_bracketed_base_url_the_client_takes() -> None:
    from asyncx.testing import FakeX

    try:
        fake = await FakeX(host="::1").start()
    except OSError as exc:  # pragma: no cover - a machine without IPv6 loopback
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert fake.base_url.startswith("http://[::1]:")
        alice = fake.users.create()
        async with fake.client() as client:
            await client.create_tweet(text="over IPv6", user=alice.bearer)
        assert len(fake.posts) == 1
    finally:
        await fake.stop()
