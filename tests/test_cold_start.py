"""What ``import asyncx`` loads: only what a call needs, so a cron bot or a short job starts fast."""

import subprocess
import sys

HEAVY = (
    "rich",
    "twitter_text",
    "redis",
    "sqlite3",
    "pkg_resources",
    "tenacity",
    "cattrs",
    "importlib.resources",
    "asyncx._ratelimit._redis",
    "asyncx.testing",
    "asyncx.bulk",
)


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys; {code}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_asyncx_loads_none_of_the_heavy_modules() -> None:
    loaded = _loaded_after("import asyncx")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_text_weighting_loads_twitter_text_on_first_use_and_never_pkg_resources() -> None:
    loaded = _loaded_after("import asyncx; asyncx.weighted_length('café 😀 https://x.com')")
    assert "twitter_text" in loaded and "pkg_resources" not in loaded


def test_the_cli_help_loads_no_command_machinery() -> None:
    loaded = _loaded_after("import asyncx._cli as c; c._parser().format_help()")
    assert not loaded & {"rich", "sqlite3", "asyncx.bulk._command", "twitter_text", "pkg_resources"}


def test_redis_store_and_retries_load_on_first_use() -> None:
    assert "tenacity" not in _loaded_after("import asyncx; asyncx.Client()")
    loaded = _loaded_after("import asyncx; asyncx.RedisStore; asyncx.Client().retry")
    assert {"asyncx._ratelimit._redis", "tenacity"} <= loaded


def test_the_default_retry_policy_is_a_fresh_policy() -> None:
    import asyncx

    client = asyncx.Client()
    assert isinstance(client.retry, asyncx.RetryPolicy)
    assert client.retry.stop.max_attempt_number == 6  # type: ignore[attr-defined]
    assert asyncx.Client(retry=None).retry is None


def test_a_text_only_post_is_encoded_and_read_without_cattrs() -> None:
    code = (
        "import asyncx; from asyncx._endpoints import endpoint_for; r = asyncx.CreateTweet(text='hi'); "
        "e = endpoint_for(r); e.prepare(r, asyncx.BearerUser('t', '1'), 'https://api.x.com'); "
        "e.parse({'data': {'id': '1', 'text': 'hi'}}, 201)"
    )
    assert "cattrs" not in _loaded_after(code)
    assert "cattrs" in _loaded_after(code.replace("text='hi')", "text='hi', nullcast=True)"))
