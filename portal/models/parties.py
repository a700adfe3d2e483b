"""Creditors and the borrowers who owe them."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.crypto import EncryptedDate, EncryptedText
from portal.db import Base, utcnow
from portal.models._types import one_of

if TYPE_CHECKING:
    from portal.models.accounts import Account

BORROWER_KINDS = ("person", "business")
LANGUAGES = ("zh_Hans_CN", "en")


class Creditor(Base):
    __tablename__ = "creditor"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Borrower(Base):
    """A person, or a business with the person who acts for it (``full_name``)."""

    __tablename__ = "borrower"
    __table_args__ = (
        one_of("kind", BORROWER_KINDS, "kind"),
        one_of("language", LANGUAGES, "language"),
        # A placed borrower is known by the lender's customer number (placements upsert by it).
        UniqueConstraint("creditor_id", "external_reference"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int | None] = mapped_column(ForeignKey("creditor.id"))
    external_reference: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="person")
    full_name: Mapped[str] = mapped_column(String(200), index=True)
    company_name: Mapped[str | None] = mapped_column(String(200))
    registration_number: Mapped[str | None] = mapped_column(String(64))
    # Sealed at rest (portal/crypto.py): compared in Python, never in SQL.
    date_of_birth: Mapped[dt.date | None] = mapped_column(EncryptedDate("borrower.date_of_birth"))
    national_id: Mapped[str | None] = mapped_column(EncryptedText("borrower.national_id"))
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    email: Mapped[str | None] = mapped_column(String(254))
    language: Mapped[str] = mapped_column(String(16), default="zh_Hans_CN")
    time_zone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    address_line1: Mapped[str | None] = mapped_column(String(200))
    address_line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    country: Mapped[str] = mapped_column(String(2), default="CN")
    # Bumped to end every session of this borrower ("sign out everywhere").
    session_version: Mapped[int] = mapped_column(default=1, server_default="1")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    accounts: Mapped[list[Account]] = relationship(back_populates="borrower")

    # Flask-Login protocol
    is_authenticated = True
    is_anonymous = False
    is_active = True

    def get_id(self) -> str:
        return f"borrower:{self.id}:{self.session_version}"

    @property
    def display_name(self) -> str:
        return self.company_name or self.full_name
