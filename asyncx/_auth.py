"""Users and the credentials that sign their requests: OAuth 1.0a (HMAC-SHA1) and OAuth 2.0 bearer tokens.

No secret appears in a ``repr``: users show only a non-secret ``key`` (their user id where known).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import lru_cache
from urllib.parse import quote, urlsplit

import attrs

from ._errors import ValidationError
from ._transport import check_proxy
from ._validation import check_credential, is_id

__all__ = ["BearerUser", "OAuth1Signer", "OAuth1User", "User", "form_encode", "percent_encode"]


@lru_cache(maxsize=4096)
def percent_encode(value: str) -> str:
    """RFC 3986 percent-encoding as OAuth 1.0a requires: everything but ``A-Z a-z 0-9 - . _ ~``."""
    return quote(value, safe="~")


def form_encode(pairs: Iterable[tuple[str, str]]) -> bytes:
    """A form body encoded exactly as OAuth 1.0a signs it, so what is sent is what was signed."""
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in pairs).encode()


def _reencode(encoded: str) -> str:
    """Percent-encode a string whose parts are already encoded: only ``%``, ``=`` and ``&`` remain to do.

    Signing encodes the joined parameter string a second time; doing it with ``quote`` would cost more
    than the rest of the signature, on every request of a bulk job.
    """
    return encoded.replace("%", "%25").replace("=", "%3D").replace("&", "%26")


def _fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


@attrs.frozen(repr=False)
class OAuth1User:
    """A user who authorised the app through OAuth 1.0a (needed for collections; can post).

    ``user_id`` is optional; when absent it is read from the token, which X prefixes with it. ``proxy``
    is an HTTP proxy URL this user's requests go through (instead of the client's).
    """

    access_token: str = attrs.field(repr=False)
    access_token_secret: str = attrs.field(repr=False)
    user_id: str | None = None
    proxy: str | None = attrs.field(default=None, kw_only=True, repr=False)

    def __attrs_post_init__(self) -> None:
        check_credential("access_token", self.access_token)
        check_credential("access_token_secret", self.access_token_secret)
        check_proxy(self.proxy)
        if isinstance(self.user_id, int) and not isinstance(self.user_id, bool):
            object.__setattr__(self, "user_id", str(self.user_id))
        if self.user_id is None:
            prefix, dash, _ = self.access_token.partition("-")
            if dash and is_id(prefix):
                object.__setattr__(self, "user_id", prefix)
        elif not is_id(self.user_id):
            raise ValidationError(f"must be a numeric user id, got {self.user_id!r:.40}", field="user_id")

    @property
    def key(self) -> str:
        """A stable, non-secret name for this user's rate budgets and logs."""
        return self.user_id or f"oauth1:{_fingerprint(self.access_token)}"

    def __repr__(self) -> str:
        return f"OAuth1User(key={self.key!r})"


@attrs.define(eq=False, repr=False)
class BearerUser:
    """A user who authorised the app through OAuth 2.0 (PKCE): needed for bookmarks; can post.

    ``user_id`` is the token's own user (bookmarks are made at ``/2/users/:user_id/bookmarks``).
    ``refresh_token``, ``client_id`` (and ``client_secret`` for confidential clients) let asyncx renew
    an expired token; ``on_refresh`` is then awaited with the user, whose tokens have been replaced,
    so the new single-use refresh token can be stored. The user is updated in place. ``proxy`` is an
    HTTP proxy URL this user's requests go through (instead of the client's).
    """

    access_token: str
    user_id: str
    refresh_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    on_refresh: Callable[[BearerUser], Awaitable[None] | None] | None = None
    proxy: str | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        check_credential("access_token", self.access_token)
        check_proxy(self.proxy)
        for name in ("refresh_token", "client_id", "client_secret"):
            if getattr(self, name) is not None:
                check_credential(name, getattr(self, name))
        if self.on_refresh is not None and not callable(self.on_refresh):
            raise ValidationError("must be callable", field="on_refresh")
        if isinstance(self.user_id, int) and not isinstance(self.user_id, bool):
            self.user_id = str(self.user_id)
        if not is_id(self.user_id):
            raise ValidationError(f"must be a numeric user id, got {self.user_id!r:.40}", field="user_id")

    @property
    def key(self) -> str:
        """A stable, non-secret name for this user's rate budgets and logs."""
        return self.user_id

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header for this user's requests: ``Bearer`` and the current token."""
        return f"Bearer {self.access_token}"

    def __repr__(self) -> str:
        return f"BearerUser(user_id={self.user_id!r}, refreshable={self.refresh_token is not None})"


User = OAuth1User | BearerUser


@lru_cache(maxsize=64)
def _base_uri(url: str) -> str:
    """The signature base string URI (RFC 5849 3.4.1.2): lower-case scheme and host, no query."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets, as in the request line's Host
        host = f"[{host}]"
    if parts.port and not (
        (scheme == "https" and parts.port == 443) or (scheme == "http" and parts.port == 80)
    ):
        host = f"{host}:{parts.port}"
    return percent_encode(f"{scheme}://{host}{parts.path}")


class OAuth1Signer:
    """Signs requests for OAuth 1.0a users with the app's consumer key and secret (HMAC-SHA1).

    Each signature uses a fresh nonce and the current timestamp, shifted by ``offset`` seconds when the
    server's clock is known to differ from ours. The consumer secret is kept private and never shown.
    """

    def __init__(
        self, consumer_key: str, consumer_secret: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        check_credential("consumer_key", consumer_key)
        check_credential("consumer_secret", consumer_secret)
        self._consumer_key = percent_encode(consumer_key)
        self._consumer_secret = percent_encode(consumer_secret)
        self._clock = clock
        #: Seconds to add to the local clock to get the server's (learned from a 401 code 135).
        self.offset = 0.0

    def __repr__(self) -> str:
        return "OAuth1Signer(consumer_key=<hidden>)"

    def sync(self, server_time: float) -> None:
        """Sign from now on with the server's clock, read (a whole second, so +0.5) from a ``Date``."""
        self.offset = server_time + 0.5 - self._clock()

    def authorization(
        self,
        method: str,
        url: str,
        params: Iterable[tuple[str, str]],
        user: OAuth1User,
        *,
        timestamp: str | None = None,
        nonce: str | None = None,
    ) -> str:
        """The ``Authorization`` header for one request; ``params`` are its query and form parameters."""
        if timestamp is None:
            timestamp = str(int(self._clock() + self.offset))
        if nonce is None:
            nonce = binascii.hexlify(os.urandom(16)).decode()
        token = percent_encode(user.access_token)
        oauth = [
            ("oauth_consumer_key", self._consumer_key),
            ("oauth_nonce", nonce if nonce.isalnum() else percent_encode(nonce)),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", timestamp),
            ("oauth_token", token),
            ("oauth_version", "1.0"),
        ]
        pairs = oauth + [(percent_encode(k), percent_encode(val)) for k, val in params]
        pairs.sort()
        param_string = "&".join(f"{k}={val}" for k, val in pairs)
        base = f"{method.upper()}&{_base_uri(url)}&{_reencode(param_string)}"
        key = f"{self._consumer_secret}&{percent_encode(user.access_token_secret)}"
        digest = hmac.new(key.encode(), base.encode(), hashlib.sha1).digest()
        b64 = base64.b64encode(digest).decode()
        signature = b64.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        oauth.append(("oauth_signature", signature))
        oauth.sort()
        return "OAuth " + ", ".join(f'{k}="{val}"' for k, val in oauth)
