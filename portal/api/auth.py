"""Who calls the API: a lender's bearer token, with the scope each operation declares."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, request
from flask_limiter.util import get_remote_address

from portal.api.errors import ApiError, bearer_challenge
from portal.extensions import db
from portal.models import ApiToken
from portal.models.integration import API_SCOPES
from portal.services import api_tokens
from workflows.errors import DomainError

F = TypeVar("F", bound=Callable[..., Any])

# Messages, not secrets: bandit takes a string under a "token_…" key for a password (nosec B105).
_REFUSALS = {
    "token_invalid": "The API token is not valid.",  # nosec B105
    "token_revoked": "The API token has been revoked. Ask your Accord contact for a new one.",  # nosec B105
    "token_expired": "The API token has expired. Ask your Accord contact for a new one.",  # nosec B105
}


def bearer_token() -> str | None:
    """The token of ``Authorization: Bearer <token>``, if the header is there in that form."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def rate_limit_key() -> str:
    """Requests are counted per token (by its public prefix), else per address."""
    prefix = api_tokens.prefix_of(bearer_token() or "")
    return f"api-token:{prefix}" if prefix else f"api-address:{get_remote_address()}"


def rate_limit() -> str:
    return str(current_app.config["API_RATE_LIMIT"])


def current_token() -> ApiToken:
    """The token this request was authenticated with (inside a ``@token_required`` view)."""
    token: ApiToken = g.api_token
    return token


def token_required(scope: str) -> Callable[[F], F]:
    """Admit a request only with a valid token holding ``scope``; refuse with 401 or 403 otherwise.

    The view is marked with ``required_scope`` (tests/integration/test_routes.py checks every API
    route declares one)."""
    if scope not in API_SCOPES:
        raise ValueError(f"unknown API scope {scope!r}")

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            raw = bearer_token()
            if raw is None:
                raise ApiError(
                    "token_missing",
                    "Send the API token in an Authorization: Bearer <token> header.",
                    headers=bearer_challenge(),
                )
            try:
                token = api_tokens.authenticate(db.session, raw)
            except DomainError as exc:
                raise ApiError(
                    exc.code, _REFUSALS[exc.code], headers=bearer_challenge("invalid_token")
                ) from None
            if scope not in token.scopes:
                raise ApiError(
                    "scope_missing",
                    f"This token may not do this: it needs the scope {scope}.",
                    headers=bearer_challenge("insufficient_scope", scope),
                )
            g.api_token = token
            return view(*args, **kwargs)

        wrapper.required_scope = scope  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
