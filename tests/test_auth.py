"""OAuth 1.0a signing matches X's published example; users never show secrets."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import asyncx
from asyncx._auth import OAuth1Signer, _reencode, percent_encode

# X's "Creating a signature" example (developer docs, OAuth 1.0a).
CONSUMER_KEY = "xvz1evFS4wEEPTGEFPHBog"
CONSUMER_SECRET = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw"
TOKEN = "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb"
TOKEN_SECRET = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE"
PARAMS = [("include_entities", "true"), ("status", "Hello Ladies + Gentlemen, a signed OAuth request!")]


@pytest.mark.parametrize(
    ("path", "signature"),
    [
        ("/1.1/statuses/update.json", "hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D"),
        ("/1/statuses/update.json", "tnnArxj06cWHq44gCs1OSKk%2FjLY%3D"),
    ],
)
def test_signature_matches_published_example(path: str, signature: str) -> None:
    signer = OAuth1Signer(CONSUMER_KEY, CONSUMER_SECRET)
    user = asyncx.OAuth1User(access_token=TOKEN, access_token_secret=TOKEN_SECRET)
    header = signer.authorization(
        "POST",
        "https://api.twitter.com" + path,
        PARAMS,
        user,
        timestamp="1318622958",
        nonce="kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
    )
    assert f'oauth_signature="{signature}"' in header
    assert header.startswith('OAuth oauth_consumer_key="xvz1evFS4wEEPTGEFPHBog", ')


def test_tampered_parameter_changes_signature() -> None:
    signer = OAuth1Signer(CONSUMER_KEY, CONSUMER_SECRET)
    user = asyncx.OAuth1User(access_token=TOKEN, access_token_secret=TOKEN_SECRET)
    kw = {"timestamp": "1", "nonce": "abc"}
    a = signer.authorization("POST", "https://api.x.com/x", [("id", "custom-1")], user, **kw)
    b = signer.authorization("POST", "https://api.x.com/x", [("id", "custom-2")], user, **kw)
    assert a != b


def test_fresh_nonce_and_clock_timestamp_with_offset() -> None:
    signer = OAuth1Signer("k", "s", clock=lambda: 1000.7)
    user = asyncx.OAuth1User(access_token="1-a", access_token_secret="b")
    first = signer.authorization("POST", "https://api.x.com/2/tweets", [], user)
    second = signer.authorization("POST", "https://api.x.com/2/tweets", [], user)
    nonces = [re.search(r'oauth_nonce="([^"]+)"', h).group(1) for h in (first, second)]  # type: ignore[union-attr]
    assert nonces[0] != nonces[1]
    assert 'oauth_timestamp="1000"' in first
    signer.offset = -900.0
    assert 'oauth_timestamp="100"' in signer.authorization("POST", "https://api.x.com/2/tweets", [], user)


def test_percent_encoding_is_rfc3986() -> None:
    assert percent_encode("a b+c/~-._*!") == "a%20b%2Bc%2F~-._%2A%21"
    assert percent_encode("☃") == "%E2%98%83"


def test_reprs_hide_secrets() -> None:
    user = asyncx.OAuth1User(access_token="12345-SECRETTOKEN", access_token_secret="SECRETSECRET")
    bearer = asyncx.BearerUser(
        access_token="BEARERSECRET",
        user_id="2244994945",
        refresh_token="REFRESHSECRET",
        client_secret="CLIENTSECRET",
    )
    client = asyncx.Client(consumer_key="CONSUMERKEY", consumer_secret="CONSUMERSECRET")
    text = repr(user) + repr(bearer) + repr(client) + repr(client._signer) + str(user) + str(bearer)
    for secret in (
        "SECRETTOKEN",
        "SECRETSECRET",
        "BEARERSECRET",
        "REFRESHSECRET",
        "CLIENTSECRET",
        "CONSUMERSECRET",
    ):
        assert secret not in text
    assert user.key == "12345"
    assert bearer.key == "2244994945"


def test_user_key_without_numeric_prefix_is_a_fingerprint() -> None:
    user = asyncx.OAuth1User(access_token="opaque", access_token_secret="s")
    assert user.key.startswith("oauth1:") and "opaque" not in user.key


def test_bearer_user_needs_numeric_user_id() -> None:
    with pytest.raises(asyncx.ValidationError) as info:
        asyncx.BearerUser(access_token="t", user_id="alice")
    assert info.value.field == "user_id"
    assert asyncx.BearerUser(access_token="t", user_id=42).user_id == "42"  # type: ignore[arg-type]


@given(st.lists(st.tuples(st.text(), st.text()), max_size=6))
def test_fast_reencoding_equals_percent_encoding(pairs: list[tuple[str, str]]) -> None:
    """The signer's cheap second encoding of the parameter string is exactly RFC 3986 encoding."""
    encoded = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in pairs)
    assert _reencode(encoded) == percent_encode(encoded)


def test_sync_signs_with_the_servers_clock() -> None:
    signer = OAuth1Signer("k", "s", clock=lambda: 1000.2)
    user = asyncx.OAuth1User(access_token="1-a", access_token_secret="b")
    signer.sync(1900.0)  # a Date 900 s ahead of us
    assert 'oauth_timestamp="1900"' in signer.authorization("POST", "https://api.x.com/2/tweets", [], user)
