"""Renewing OAuth 2.0 user tokens with a refresh token (``POST /2/oauth2/token``).

X's refresh tokens are single-use: every refresh returns a new one, which replaces the old on the
``BearerUser`` and is handed to its ``on_refresh`` callback to store.
"""

from __future__ import annotations

import base64
import inspect
import logging

from ._auth import BearerUser, form_encode
from ._errors import MalformedResponse, TransportError, Unauthorized, ValidationError
from ._transport import Transport, WireRequest
from ._validation import check_credential

__all__ = ["OAuth2Refresher"]

log = logging.getLogger("asyncx")


class OAuth2Refresher:
    """Refreshes ``BearerUser`` tokens through the client's transport; it holds no secret itself."""

    def __init__(self, transport: Transport, base_url: str) -> None:
        self._transport = transport
        self._url = base_url + "/2/oauth2/token"

    async def refresh(self, user: BearerUser) -> None:
        """Replace ``user``'s tokens with fresh ones, or raise ``Unauthorized``."""
        assert user.refresh_token is not None
        user.access_token, user.refresh_token = await self.exchange(user, user.refresh_token)
        await self.announce(user)

    async def exchange(self, user: BearerUser, refresh_token: str) -> tuple[str, str]:
        """Spend ``refresh_token`` (single-use) for a new pair, ``(access_token, refresh_token)``, or raise
        ``Unauthorized``. ``user`` is not changed."""
        assert user.client_id is not None
        form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", user.client_id),
        ]
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if user.client_secret:  # a confidential client authenticates itself too
            basic = base64.b64encode(f"{user.client_id}:{user.client_secret}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        try:
            response = await self._transport.send(WireRequest("POST", self._url, headers, form_encode(form)))
        except (TransportError, MalformedResponse) as exc:  # no answer, or one past the body cap
            raise Unauthorized(
                401, message=f"could not refresh the token of user {user.user_id}: {exc}"
            ) from None
        data = response.json()
        token = data.get("access_token") if isinstance(data, dict) else None
        if response.status != 200 or not isinstance(token, str) or not token:
            reason = data.get("error", "") if isinstance(data, dict) else ""
            raise Unauthorized(
                401 if response.status < 500 else response.status,
                headers=response.headers,
                message=f"could not refresh the token of user {user.user_id} ({response.status} {reason})",
            )
        fresh = data.get("refresh_token") or refresh_token
        try:
            check_credential("access_token", token)
            check_credential("refresh_token", fresh)
        except ValidationError:
            raise Unauthorized(
                401, message=f"the token endpoint answered unusable tokens for user {user.user_id}"
            ) from None
        return token, fresh

    async def announce(self, user: BearerUser) -> None:
        """Log a refresh this process made and hand the user, holding the new pair, to ``on_refresh``."""
        log.info("refreshed the OAuth 2.0 token of user %s", user.user_id)
        if user.on_refresh is not None:
            outcome = user.on_refresh(user)
            if inspect.isawaitable(outcome):
                await outcome
