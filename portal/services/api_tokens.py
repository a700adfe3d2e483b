"""Lenders' API tokens: issued by an admin for one creditor with named scopes, shown once, revocable.

A token reads ``acc_<prefix>_<secret>``: the prefix (10 lower-case letters and digits) is public and
finds the row; the secret is 32 random bytes from ``secrets``. Only the SHA-256 of the whole token is
stored. A fast hash is the right one here: a slow password hash (argon2) protects guessable human
passwords, while a 256-bit random secret cannot be guessed however fast each guess is, and every API
request has to check it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import string

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import ApiToken, Creditor
from portal.models.integration import API_SCOPES
from portal.services import audit
from portal.services.audit import Actor
from workflows.errors import DomainError

MARKER = "acc"
"""How every token starts, so that it is recognised (by people and by secret scanners)."""
PREFIX_LENGTH = 10
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
SECRET_BYTES = 32
MAX_NAME_LENGTH = 100
MAX_EXPIRY_DAYS = 3650
LAST_USED_PRECISION = dt.timedelta(minutes=1)
"""``last_used_at`` is written at most this often, so authenticating is no write per request."""

_SECRET_CHARS = -(-SECRET_BYTES * 4 // 3)  # secrets.token_urlsafe: unpadded base64 of the bytes
_TOKEN = re.compile(rf"{MARKER}_([a-z0-9]{{{PREFIX_LENGTH}}})_([A-Za-z0-9_-]{{{_SECRET_CHARS}}})", re.ASCII)
# Compared against when the prefix is unknown, so a wrong prefix costs the same as a wrong secret.
_NO_HASH = hashlib.sha256(b"accord-no-such-token").hexdigest()
AUDITED_FIELDS = ("creditor_id", "name", "prefix", "scopes", "expires_at", "revoked_at")


def token_hash(raw: str) -> str:
    """The stored form of a token: the SHA-256 of its whole text, in hex."""
    return hashlib.sha256(raw.encode()).hexdigest()


def prefix_of(raw: str) -> str | None:
    """The public prefix of a well-formed token (the rate limiter's key), else ``None``."""
    match = _TOKEN.fullmatch(raw)
    return match.group(1) if match else None


def _scopes(scopes: list[str] | tuple[str, ...]) -> list[str]:
    unknown = sorted(set(scopes) - set(API_SCOPES))
    if unknown:
        raise DomainError("scope_unknown", "{scope} is not an API scope.", scope=unknown[0])
    if not scopes:
        raise DomainError("scopes_missing", "Choose at least one scope.")
    return [scope for scope in API_SCOPES if scope in scopes]


def create(
    session: Session,
    actor: Actor,
    *,
    creditor_id: int,
    name: str,
    scopes: list[str] | tuple[str, ...],
    expires_in_days: int | None,
) -> tuple[ApiToken, str]:
    """Issue a token for one creditor; returns the row and the token text, which is never stored
    and cannot be shown again. ``expires_in_days`` None: it lasts until revoked."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise DomainError(
            "token_name_invalid", "Enter a name of 1 to {maximum} characters.", maximum=MAX_NAME_LENGTH
        )
    chosen = _scopes(scopes)
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise DomainError(
            "token_expiry_invalid",
            "Enter a number of days from 1 to {maximum}, or none.",
            maximum=MAX_EXPIRY_DAYS,
        )
    if session.get(Creditor, creditor_id) is None:
        raise DomainError("token_creditor_unknown", "Choose a lender from the list.")
    prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    raw = f"{MARKER}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    now = utcnow()
    token = ApiToken(
        creditor_id=creditor_id,
        name=name,
        prefix=prefix,
        token_hash=token_hash(raw),
        scopes=chosen,
        created_by_id=actor.id if actor.type == "staff" else None,
        created_at=now,
        expires_at=now + dt.timedelta(days=expires_in_days) if expires_in_days is not None else None,
    )
    session.add(token)
    session.flush()
    audit.record(
        session,
        actor,
        "api_token.created",
        "api_token",
        token.id,
        after=audit.snapshot(token, AUDITED_FIELDS),
    )
    session.commit()
    return token, raw


def revoke(session: Session, actor: Actor, token_id: int) -> ApiToken:
    """Revoke a token at once; revoking it again changes nothing."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise DomainError("api_token_unknown", "This API token was not found.")
    if token.revoked_at is not None:
        return token
    with audit.change(session, actor, "api_token.revoked", token, AUDITED_FIELDS):
        token.revoked_at = utcnow()
    session.commit()
    return token


def find(session: Session, prefix: str) -> ApiToken | None:
    """The token with this public prefix."""
    return session.scalar(select(ApiToken).where(ApiToken.prefix == prefix))


def listing(session: Session) -> list[ApiToken]:
    """Every token, newest first (revoked ones too: they stay as a record)."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


def creditors(session: Session) -> dict[int, Creditor]:
    """The creditors tokens can be issued for, by id."""
    return {row.id: row for row in session.scalars(select(Creditor).order_by(Creditor.code))}


def authenticate(session: Session, raw: str, *, now: dt.datetime | None = None) -> ApiToken:
    """The token ``raw`` is, if it may be used now; else a DomainError saying why.

    ``token_invalid``: not a token, an unknown prefix or a wrong secret (one answer for all three,
    so nothing is learnt about other lenders' tokens). ``token_revoked`` / ``token_expired`` only
    for the genuine token, whose holder may know. Records ``last_used_at`` (commits) at most once
    a minute."""
    now = now or utcnow()
    match = _TOKEN.fullmatch(raw)
    token = None
    if match is not None:
        token = find(session, match.group(1))
    stored = token.token_hash if token is not None else _NO_HASH
    if not hmac.compare_digest(stored, token_hash(raw)) or token is None:
        raise DomainError("token_invalid", "The API token is not valid.")
    if token.revoked_at is not None:
        raise DomainError("token_revoked", "The API token has been revoked.")
    if token.expires_at is not None and token.expires_at <= now:
        raise DomainError("token_expired", "The API token has expired.")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
        token.last_used_at = now
        session.commit()
    return token
