"""The endpoint registry: each endpoint declared once, and everything that varies by endpoint read from it."""

from __future__ import annotations

from asyncx._endpoints import ENDPOINT_NAMES, ENDPOINTS
from asyncx._ratelimit import _redis, _rules


def test_every_endpoint_has_a_unique_name_and_a_unique_one_letter_key_code() -> None:
    names = [e.name for e in ENDPOINTS.values()]
    codes = [e.code for e in ENDPOINTS.values()]
    assert len(set(names)) == len(names) and tuple(names) == ENDPOINT_NAMES
    assert all(len(code) == 1 for code in codes) and len(set(codes)) == len(codes)


def test_rate_limits_and_redis_keys_read_the_registry() -> None:
    """No second list to keep: the default windows and the Redis key codes are the registry's."""
    assert _rules.ENDPOINT_NAMES is ENDPOINT_NAMES
    for endpoint in ENDPOINTS.values():
        assert _rules.DEFAULT_LIMITS.get(endpoint.name, ()) == endpoint.limits
        assert _rules.DEFAULT_LIMITS.get(_rules.APP_PREFIX + endpoint.name, ()) == endpoint.app_limits
        assert _redis._ENDPOINT_CODES[endpoint.name] == endpoint.code
    assert set(_rules.DEFAULT_LIMITS) <= set(ENDPOINT_NAMES) | {_rules.APP_PREFIX + n for n in ENDPOINT_NAMES}
    key, _ = _redis._place(_redis.SEP.join(("42", "bookmark", "window")))
    assert key == "{42}b"
