"""Borrower sign-in: an attempt (bound to one browser) and the one-time codes issued for it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, utcnow
from portal.models._types import BigId, one_of

CHANNELS = ("sms", "email")


class SigninAttempt(Base):
    """Step 1 of a sign-in. Made whether or not the details matched (``borrower_id`` is then
    empty), so both answers do the same work and look the same."""

    __tablename__ = "signin_attempt"
    __table_args__ = (one_of("purpose", ("signin", "step_up"), "purpose"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # SHA-256 of the random token kept in the browser's session: the attempt is bound to it.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    borrower_id: Mapped[int | None] = mapped_column(ForeignKey("borrower.id"), index=True)
    ip: Mapped[str | None] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(16), default="signin", server_default="signin")
    """"signin", or "step_up": a fresh code for a signed-in borrower about to sign."""
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[dt.datetime | None]


class SigninCode(Base):
    """A 6-digit code, stored only as a keyed hash; good once, for ten minutes, five tries."""

    __tablename__ = "signin_code"
    __table_args__ = (
        one_of("channel", CHANNELS, "channel"),
        Index("ix_signin_code_borrower_created", "borrower_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("signin_attempt.id"), index=True)
    borrower_id: Mapped[int | None] = mapped_column(ForeignKey("borrower.id"))
    channel: Mapped[str] = mapped_column(String(8))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    wrong_tries: Mapped[int] = mapped_column(default=0)
    used_at: Mapped[dt.datetime | None]
