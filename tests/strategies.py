"""Hypothesis strategies shared by the tests."""

from hypothesis import strategies as st

ids = st.integers(min_value=1, max_value=10**19 - 1).map(str)
bad_ids = st.one_of(
    st.text(min_size=0, max_size=25).filter(
        lambda s: not (s.isascii() and s.isdigit() and 1 <= len(s) <= 19)
    ),
    st.integers(min_value=10**19, max_value=10**25).map(str),
)
ascii_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=400)
any_text = st.text(max_size=320)
#: Sentences with full stops, and pieces of URLs and domains: where a dot starts a URL and where not.
sentences = st.lists(
    st.sampled_from(
        [
            *("Hello", "world", "example", "t", "x", "2", ".com", ".co", ".io", ".2", "https://", "www."),
            *(".", "..", ". ", " ", "\n", "!", "?", "/", ":", "-", "@", "#", "$", "(", ")"),
        ]
    ),
    max_size=60,
).map("".join)

#: Keyword sets for create_tweet that are each invalid in at least one way.
bad_post_kwargs = st.one_of(
    st.builds(lambda n: {"text": "a" * n}, st.integers(281, 2000)),
    st.builds(lambda n: {"text": "😀" * n}, st.integers(141, 400)),
    st.fixed_dictionaries({"text": st.just("x"), "quote_tweet_id": bad_ids}),
    st.fixed_dictionaries(
        {
            "text": st.just("x"),
            "reply_settings": st.text(max_size=20).filter(
                lambda s: s not in {"following", "mentionedUsers", "subscribers", "verified"}
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "poll": st.fixed_dictionaries(
                {
                    "options": st.lists(st.text(min_size=1, max_size=25), min_size=0, max_size=8).filter(
                        lambda o: not 2 <= len(o) <= 4
                    ),
                    "duration_minutes": st.integers(5, 10080),
                }
            )
        }
    ),
    st.fixed_dictionaries(
        {
            "poll": st.fixed_dictionaries(
                {
                    "options": st.just(["a", "b"]),
                    "duration_minutes": st.integers().filter(lambda d: not 5 <= d <= 10080),
                }
            )
        }
    ),
    st.fixed_dictionaries(
        {"media": st.fixed_dictionaries({"media_ids": st.lists(ids, min_size=5, max_size=9)})}
    ),
    st.fixed_dictionaries(
        {
            "text": st.just("x"),
            "media": st.fixed_dictionaries({"media_ids": st.lists(ids, min_size=1, max_size=4)}),
            "quote_tweet_id": ids,
        }
    ),
    st.just({}),
)
