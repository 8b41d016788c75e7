"""The server side of OAuth 1.0a: parse an Authorization header and check its HMAC-SHA1 signature.

Written separately from the client's signer, so the fake catches a signer that drifts from RFC 5849.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

__all__ = ["parse_header", "signature"]


def _enc(value: str) -> str:
    return quote(value, safe="~")


def parse_header(header: str) -> dict[str, str] | None:
    """The decoded fields of an ``OAuth ...`` header (the scheme in any case), or None if it is not one."""
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "oauth":
        return None
    fields = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or len(value) < 2 or value[0] != '"' or value[-1] != '"':
            return None
        fields[unquote(name)] = unquote(value[1:-1])
    return fields


def signature(
    method: str, url: str, params: Iterable[tuple[str, str]], consumer_secret: str, token_secret: str
) -> str:
    """The base64 HMAC-SHA1 signature of a request (``params`` include the oauth_* fields)."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    netloc = (parts.hostname or "").lower() + (
        f":{parts.port}" if parts.port and parts.port != default else ""
    )
    base_uri = f"{parts.scheme.lower()}://{netloc}{parts.path}"
    encoded = sorted((_enc(k), _enc(v)) for k, v in params)
    param_string = "&".join(f"{k}={v}" for k, v in encoded)
    base = "&".join([method.upper(), _enc(base_uri), _enc(param_string)])
    key = f"{_enc(consumer_secret)}&{_enc(token_secret)}"
    return base64.b64encode(hmac.new(key.encode(), base.encode(), hashlib.sha1).digest()).decode()
