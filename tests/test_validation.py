"""Text weighting per twitter-text v3 and the field checks that run before anything is sent."""

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncx
from asyncx._validation import _parse_tweet

from .strategies import any_text, ascii_text, sentences


def parse_tweet(text: str) -> Any:
    """twitter-text-parser's own count, loaded as asyncx loads it (it needs no ``pkg_resources`` then)."""
    return _parse_tweet()(text)


def test_280_ascii_passes_281_fails() -> None:
    assert asyncx.CreateTweet(text="a" * 280).text == "a" * 280
    with pytest.raises(asyncx.ValidationError) as info:
        asyncx.CreateTweet(text="a" * 281)
    assert info.value.field == "text"
    assert "281" in str(info.value)


def test_140_emoji_pass_141_fail() -> None:
    asyncx.CreateTweet(text="😀" * 140)
    with pytest.raises(asyncx.ValidationError, match="weighted length 282"):
        asyncx.CreateTweet(text="😀" * 141)


@pytest.mark.parametrize(
    ("text", "weight"),
    [
        ("hello", 5),
        ("日本語", 6),  # CJK weighs 2
        ("é", 1),  # NFC-normalised first: one code point
        ("e\u0301", 1),
        ("👨‍👩‍👧‍👦", 2),  # a ZWJ sequence is one emoji
        ("👍🏽", 2),  # skin tone modifier
        ("see https://example.com/" + "x" * 200, 4 + 23),  # every URL weighs 23
        ("example.com", 23),  # a bare domain is a URL too
        ("a.b", 3),  # not a URL: no known TLD
        ("\u2018quotes\u2019", 8),  # 8216-8217 are in a weight-1 range
        ("\u2026", 2),  # 8230 is not
    ],
)
def test_weighted_length_known_cases(text: str, weight: int) -> None:
    assert asyncx.weighted_length(text) == weight


@given(ascii_text)
def test_ascii_fast_path_agrees_with_twitter_text(text: str) -> None:
    if text:
        assert asyncx.weighted_length(text) == parse_tweet(text).weightedLength


@given(sentences)
@settings(max_examples=400)
def test_full_stops_skip_the_parse_and_urls_do_not(text: str) -> None:
    if text and not text.isspace():
        assert asyncx.weighted_length(text) == parse_tweet(text).weightedLength


def test_a_sentence_with_full_stops_is_weighed_without_twitter_text() -> None:
    from asyncx._validation import _measure

    _parse_tweet.cache_clear()
    assert _measure("Done. Next: 3 more... ok.") == (25, True)
    assert _parse_tweet.cache_info().misses == 0


@given(any_text)
def test_weighted_length_agrees_with_twitter_text(text: str) -> None:
    if text:
        assert asyncx.weighted_length(text) == parse_tweet(text).weightedLength


def test_invalid_characters_refused() -> None:
    with pytest.raises(asyncx.ValidationError, match="characters"):
        asyncx.CreateTweet(text="bad \ufffe char")


@pytest.mark.parametrize("value", ["", "abc", "12345678901234567890", "-1", "1.0", " 1"])
def test_bad_ids_refused(value: str) -> None:
    with pytest.raises(asyncx.ValidationError) as info:
        asyncx.Bookmark(value)
    assert info.value.field == "tweet_id"


def test_int_ids_accepted_as_strings() -> None:
    assert asyncx.Bookmark(1234).tweet_id == "1234"  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["123", "custom-", "custom-abc", "Custom-1", "custom-1 "])
def test_bad_collection_ids_refused(value: str) -> None:
    with pytest.raises(asyncx.ValidationError) as info:
        asyncx.AddCollectionEntry(value, "1")
    assert info.value.field == "id"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"media": {"media_ids": ["1"]}, "poll": {"options": ["a", "b"], "duration_minutes": 5}}, "poll"),
        ({"media": {"media_ids": ["1"]}, "quote_tweet_id": "2"}, "quote_tweet_id"),
        ({"poll": {"options": ["a", "b"], "duration_minutes": 5}, "quote_tweet_id": "2"}, "quote_tweet_id"),
        ({"media": {"media_ids": []}}, "media.media_ids"),
        ({"media": {"media_ids": ["1", "2", "3", "4", "5"]}}, "media.media_ids"),
        ({"poll": {"options": ["a"], "duration_minutes": 5}}, "poll.options"),
        ({"poll": {"options": ["a", "b", "c", "d", "e"], "duration_minutes": 5}}, "poll.options"),
        ({"poll": {"options": ["a", ""], "duration_minutes": 5}}, "poll.options[1]"),
        ({"poll": {"options": ["a", "x" * 26], "duration_minutes": 5}}, "poll.options[1]"),
        ({"poll": {"options": ["a", "b"], "duration_minutes": 4}}, "poll.duration_minutes"),
        ({"poll": {"options": ["a", "b"], "duration_minutes": 10081}}, "poll.duration_minutes"),
        ({"poll": {"options": ["a", "b"]}}, "poll.duration_minutes"),
        ({"text": "bad \ud800 surrogate"}, "text"),
        ({"text": "nul \x00 inside"}, "text"),
        ({"text": "bell \x07"}, "text"),
        ({"text": " \n\t "}, "text"),
        ({"text": "x", "quote_tweet_id": "\u0661\u0662"}, "quote_tweet_id"),  # Arabic-Indic digits
        ({"text": "x", "quote_tweet_id": "1" * 20}, "quote_tweet_id"),
        ({"text": "x", "geo": {"place_id": "p" * 2_000_000}}, "geo.place_id"),
        ({"text": "x", "geo": {"place_id": "a/../b"}}, "geo.place_id"),
        ({"poll": {"options": ["a", "\ud800"], "duration_minutes": 5}}, "poll.options[1]"),
        ({"poll": {"options": ["a", None], "duration_minutes": 5}}, "poll.options[1]"),
        ({"media": {"media_ids": ["1", None]}}, "media.media_ids[1]"),
        (
            {"text": "x", "direct_message_deep_link": "https://x.com/\r\nHost: evil"},
            "direct_message_deep_link",
        ),
        ({"text": "x", "reply_settings": "everyone"}, "reply_settings"),
        ({"text": "x", "reply": {"in_reply_to_tweet_id": "x"}}, "reply.in_reply_to_tweet_id"),
        ({"text": "x", "reply": {"tweet": "1"}}, "reply"),
        ({"text": "x", "reply": "1"}, "reply"),
        ({"text": "x", "geo": {"place_id": ""}}, "geo.place_id"),
        ({"text": "x", "direct_message_deep_link": "http://x.com"}, "direct_message_deep_link"),
        ({"text": "x", "for_super_followers_only": "yes"}, "for_super_followers_only"),
        ({}, "text"),
        ({"text": ""}, "text"),
    ],
)
def test_create_tweet_field_checks(kwargs: dict, field: str) -> None:
    with pytest.raises(asyncx.ValidationError) as info:
        asyncx.CreateTweet(**kwargs)
    assert field in {e.field for e in info.value.errors}, info.value.errors


@pytest.mark.parametrize("ok", ["following", "mentionedUsers", "subscribers", "verified"])
def test_reply_settings_accepted(ok: str) -> None:
    assert asyncx.CreateTweet(text="x", reply_settings=ok).reply_settings == ok


def test_every_bad_field_reported_at_once() -> None:
    with pytest.raises(asyncx.ValidationError) as info:
        asyncx.CreateTweet(
            text="a" * 300,
            quote_tweet_id="nope",
            reply_settings="all",
            poll={"options": ["a"], "duration_minutes": 1},
        )
    fields = {e.field for e in info.value.errors}
    assert {"text", "quote_tweet_id", "reply_settings", "poll.options", "poll.duration_minutes"} <= fields


def test_nested_parts_accept_class_or_dict() -> None:
    a = asyncx.CreateTweet(text="x", reply=asyncx.Reply("1"), geo=asyncx.Geo("abc"))
    b = asyncx.CreateTweet(text="x", reply={"in_reply_to_tweet_id": "1"}, geo={"place_id": "abc"})
    assert a == b


@pytest.mark.parametrize("count", [0, 101])
def test_curate_takes_1_to_100_changes(count: int) -> None:
    with pytest.raises(asyncx.ValidationError) as info:
        asyncx.CurateCollection("custom-1", [{"op": "add", "tweet_id": "1"}] * count)
    assert info.value.field == "changes"


def test_curate_ops_checked() -> None:
    with pytest.raises(asyncx.ValidationError) as info:
        asyncx.CurateCollection("custom-1", [{"op": "add", "tweet_id": "1"}, {"op": "move", "tweet_id": "2"}])
    assert info.value.field == "changes[1].op"
    assert len(asyncx.CurateCollection("custom-1", [{"op": "remove", "tweet_id": "1"}] * 100).changes) == 100


def test_rate_limit_is_checked() -> None:
    assert asyncx.RateLimit(100, 900.0).requests == 100
    with pytest.raises(asyncx.ValidationError):
        asyncx.RateLimit(0, 900.0)
    with pytest.raises(asyncx.ValidationError):
        asyncx.RateLimit(1, 0)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: asyncx.CurateCollection("custom-1", [None]), "changes[0]"),
        (lambda: asyncx.CurateCollection("custom-1", [{"op": "add"}]), "changes[0].tweet_id"),
        (lambda: asyncx.CurateCollection("custom-\u0661", [{"op": "add", "tweet_id": "1"}]), "id"),
        (lambda: asyncx.CurateCollection("custom-1/../2", [{"op": "add", "tweet_id": "1"}]), "id"),
        (lambda: asyncx.Bookmark("\u0661\u0662"), "tweet_id"),
        (lambda: asyncx.BearerUser(access_token="t", user_id="\u0661\u0662"), "user_id"),
        (lambda: asyncx.BearerUser(access_token="t", user_id="1/../2"), "user_id"),
        (lambda: asyncx.BearerUser(access_token="t\r\nX-Evil: 1", user_id="1"), "access_token"),
        (lambda: asyncx.BearerUser(access_token="t", user_id="1", refresh_token="r\n"), "refresh_token"),
        (lambda: asyncx.BearerUser(access_token="tök", user_id="1"), "access_token"),
        (lambda: asyncx.OAuth1User(access_token="1-a\nb", access_token_secret="s"), "access_token"),
        (lambda: asyncx.OAuth1User(access_token="a", access_token_secret="s\u00e9"), "access_token_secret"),
        (lambda: asyncx.OAuth1User(access_token="a", access_token_secret="s", user_id="x"), "user_id"),
        (lambda: asyncx.Client(consumer_key="k\r", consumer_secret="s"), "consumer_key"),
        (lambda: asyncx.Client(consumer_key="k", consumer_secret="s e"), "consumer_secret"),
        (lambda: asyncx.Client(max_wait="5"), "max_wait"),
        (lambda: asyncx.Client(max_in_flight=0), "max_in_flight"),
        (lambda: asyncx.Client(max_connections="9"), "max_connections"),
        (lambda: asyncx.Client(timeouts=30), "timeouts"),
        (lambda: asyncx.Client(retry=3), "retry"),
        (lambda: asyncx.Client(base_url=b"https://api.x.com"), "base_url"),
        (lambda: asyncx.Client(user="alice"), "user"),
        (lambda: asyncx.Timeouts(total=float("nan")), "total"),
        (lambda: asyncx.RetryPolicy(deadline=-1), "deadline"),
    ],
)
def test_bad_input_anywhere_is_a_validation_error_naming_the_field(build: Any, field: str) -> None:
    with pytest.raises(asyncx.ValidationError) as info:
        build()
    assert field in {e.field for e in info.value.errors}, info.value.errors


def test_a_secret_is_never_shown_in_its_validation_error() -> None:
    with pytest.raises(asyncx.ValidationError) as info:
        asyncx.BearerUser(access_token="s3cr3t\n", user_id="1")
    assert "s3cr3t" not in str(info.value)


_anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30) | st.binary(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=12,
)
_post_fields = st.sampled_from(
    [
        "text",
        "quote_tweet_id",
        "for_super_followers_only",
        "reply",
        "media",
        "poll",
        "reply_settings",
        "geo",
        "direct_message_deep_link",
    ]
)
_nested_shapes = st.fixed_dictionaries(
    {},
    optional={
        "in_reply_to_tweet_id": _anything,
        "exclude_reply_user_ids": _anything,
        "media_ids": _anything,
        "tagged_user_ids": _anything,
        "options": _anything,
        "duration_minutes": _anything,
        "place_id": _anything,
        "op": _anything,
        "tweet_id": _anything,
    },
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(_post_fields, _anything | _nested_shapes, max_size=5),
    st.lists(_anything | _nested_shapes, max_size=4),
    _anything,
    _anything,
)
def test_any_input_validates_or_raises_validation_error(
    post: dict[str, Any], changes: list[Any], one: Any, two: Any
) -> None:
    """Whatever a caller passes, a request class builds or raises ValidationError: nothing else."""
    builds = [
        lambda: asyncx.CreateTweet(**post),
        lambda: asyncx.CurateCollection(one, changes),
        lambda: asyncx.CurateCollection("custom-1", one),
        lambda: asyncx.AddCollectionEntry(one, two),
        lambda: asyncx.AddCollectionEntry("custom-1", "1", relative_to=one, above=two),
        lambda: asyncx.Bookmark(one),
        lambda: asyncx.Reply(one, two),
        lambda: asyncx.Media(one, two),
        lambda: asyncx.Poll(one, two),
        lambda: asyncx.Geo(one),
        lambda: asyncx.CollectionChange(one, two),
        lambda: asyncx.BearerUser(access_token=one, user_id=two),
        lambda: asyncx.OAuth1User(access_token=one, access_token_secret=two),
        lambda: asyncx.RateLimit(one, two),
    ]
    for build in builds:
        with contextlib.suppress(asyncx.ValidationError):
            build()
