"""Borrower sign-in codes: how they are made, how long they last, how often they may be sent."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from enum import StrEnum

CODE_DIGITS = 6
CODE_LIFETIME = dt.timedelta(minutes=10)
MAX_WRONG_TRIES = 5
RESEND_WINDOW = dt.timedelta(minutes=15)
MAX_CODES_PER_WINDOW = 3


def new_code() -> str:
    """A fresh 6-digit code from the operating system's secure random source."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def new_attempt_token() -> str:
    return secrets.token_urlsafe(32)


def digest(key: bytes, value: str) -> str:
    """A keyed SHA-256 of a token or a code: what is stored instead of the value itself."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def code_digest(key: bytes, attempt_token: str, code: str) -> str:
    """A code's stored form, bound to its sign-in attempt: the same code in another attempt differs."""
    return digest(key, f"{attempt_token}:{code}")


def normalise_code(text: str) -> str | None:
    """The digits the borrower typed (spaces and dashes ignored; full-width digits accepted)."""
    cleaned = "".join(ch for ch in text if ch not in " -\u3000")
    cleaned = cleaned.translate({0xFF10 + d: ord("0") + d for d in range(10)})
    return cleaned if len(cleaned) == CODE_DIGITS and cleaned.isascii() and cleaned.isdigit() else None


def resend_wait(sent_at: Sequence[dt.datetime], now: dt.datetime) -> dt.timedelta | None:
    """No more than three codes in fifteen minutes: None when another may go now, else how long to wait."""
    recent = sorted(t for t in sent_at if now - t < RESEND_WINDOW)
    if len(recent) < MAX_CODES_PER_WINDOW:
        return None
    return recent[len(recent) - MAX_CODES_PER_WINDOW] + RESEND_WINDOW - now


class CodeCheck(StrEnum):
    ACCEPTED = "accepted"
    WRONG = "code_wrong"
    EXPIRED = "code_expired"
    USED = "code_used"
    TOO_MANY_TRIES = "code_too_many_tries"


def check_code(
    *,
    matches: bool,
    created_at: dt.datetime,
    used: bool,
    wrong_tries: int,
    now: dt.datetime,
) -> CodeCheck:
    """A code is good once, for ten minutes, and dies after five wrong tries."""
    if used:
        return CodeCheck.USED
    if wrong_tries >= MAX_WRONG_TRIES:
        return CodeCheck.TOO_MANY_TRIES
    if now - created_at >= CODE_LIFETIME:
        return CodeCheck.EXPIRED
    return CodeCheck.ACCEPTED if matches else CodeCheck.WRONG
