"""Hardship cases: the borrower's statement of their situation, evidence, offers, and the
breathing space a submitted case gives the account."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.crypto import EncryptedInteger, EncryptedText
from portal.db import Base, utcnow
from portal.models._types import one_of
from workflows.negotiation import CaseState

if TYPE_CHECKING:
    from portal.models.accounts import Account
    from portal.models.parties import Borrower
    from portal.models.staff import StaffUser

HARDSHIP_REASONS = ("illness", "job_loss", "income_drop", "disaster", "bereavement", "other")
EMPLOYMENT_STATUSES = (
    "employed",
    "self_employed",
    "unemployed",
    "retired",
    "student",
    "unable_to_work",
    "carer",
    "other",
)
BUDGET_FREQUENCIES = ("weekly", "fortnightly", "four_weekly", "monthly")
OFFER_ORIGINS = ("system", "borrower", "agent")
DECISION_REASONS = (
    "not_affordable",
    "insufficient_information",
    "proposal_too_low",
    "not_eligible",
    "fraud_suspected",
    "other",
)
"""Why a request was rejected (the message to the borrower is written separately)."""
CASE_MESSAGE_KINDS = ("request_info", "response", "counter", "rejected", "approved", "expired")
OFFER_STATUSES = ("open", "accepted", "superseded", "expired", "declined")


class HardshipCase(Base):
    __tablename__ = "hardship_case"
    __table_args__ = (
        one_of("state", [s.value for s in CaseState], "state"),
        one_of("reason", HARDSHIP_REASONS, "reason"),
        one_of("employment_status", EMPLOYMENT_STATUSES, "employment_status"),
        CheckConstraint("adults IS NULL OR adults BETWEEN 1 AND 20", name="adults_range"),
        CheckConstraint("children IS NULL OR children BETWEEN 0 AND 20", name="children_range"),
        CheckConstraint("dependants IS NULL OR dependants BETWEEN 0 AND 20", name="dependants_range"),
        one_of(
            "decision_reason",
            DECISION_REASONS,
            "decision_reason",
        ),
        CheckConstraint("amount_band >= 0", name="amount_band_not_negative"),
        Index("ix_hardship_case_borrower_state", "borrower_id", "state"),
        Index("ix_hardship_case_state_sla", "state", "review_due_on"),
        # The review queue: newest priority first, then id, for keyset pagination.
        Index("ix_hardship_case_queue", "state", "priority", "id"),
        Index("ix_hardship_case_claimed_by", "state", "claimed_by_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    borrower_id: Mapped[int] = mapped_column(ForeignKey("borrower.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    state: Mapped[str] = mapped_column(String(32), default=CaseState.DRAFT.value)
    reason: Mapped[str | None] = mapped_column(String(16))
    # The borrower's own account of their situation (health, family): sealed at rest.
    description: Mapped[str | None] = mapped_column(EncryptedText("hardship_case.description"))
    adults: Mapped[int | None]
    children: Mapped[int | None]
    dependants: Mapped[int | None]
    employment_status: Mapped[str | None] = mapped_column(String(16))
    # The steps of the form the borrower has saved, in the order of services.hardship.STEPS.
    steps_done: Mapped[list[str]] = mapped_column(JSON, default=list)
    submitted_at: Mapped[dt.datetime | None]
    review_due_on: Mapped[dt.date | None] = mapped_column(Date)
    closed_at: Mapped[dt.datetime | None]
    policy_version: Mapped[int | None]
    # The negotiation desk: who works it, how urgent it is, and what was decided.
    vulnerable: Mapped[bool] = mapped_column(default=False, server_default=false())
    """Flagged by staff: the borrower needs particular care (illness, bereavement, …)."""
    priority: Mapped[int] = mapped_column(default=0, server_default="0")
    """From policy (balance band, stage, days waiting, vulnerability); refreshed daily."""
    amount_band: Mapped[int] = mapped_column(default=0, server_default="0")
    relief_asked: Mapped[str | None] = mapped_column(String(32))
    queued_at: Mapped[dt.datetime | None]
    claimed_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    claimed_at: Mapped[dt.datetime | None]
    first_approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    first_approved_at: Mapped[dt.datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    decided_at: Mapped[dt.datetime | None]
    decision_reason: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"version_id_col": version}

    borrower: Mapped[Borrower] = relationship()
    account: Mapped[Account] = relationship()
    budget_lines: Mapped[list[BudgetLine]] = relationship(
        back_populates="hardship_case", order_by="BudgetLine.id", cascade="all, delete-orphan"
    )
    evidence_files: Mapped[list[EvidenceFile]] = relationship(
        back_populates="hardship_case", order_by="EvidenceFile.id"
    )
    offers: Mapped[list[Offer]] = relationship(back_populates="hardship_case", order_by="Offer.id")
    notes: Mapped[list[CaseNote]] = relationship(order_by="CaseNote.id")
    messages: Mapped[list[CaseMessage]] = relationship(order_by="CaseMessage.id")
    claimed_by: Mapped[StaffUser | None] = relationship(foreign_keys=[claimed_by_id])
    first_approved_by: Mapped[StaffUser | None] = relationship(foreign_keys=[first_approved_by_id])


class BudgetLine(Base):
    """One line of the income and expenditure statement, as the borrower gave it."""

    __tablename__ = "budget_line"
    __table_args__ = (
        UniqueConstraint("hardship_case_id", "category"),
        one_of("frequency", BUDGET_FREQUENCIES, "frequency"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hardship_case_id: Mapped[int] = mapped_column(ForeignKey("hardship_case.id"))
    category: Mapped[str] = mapped_column(String(32))
    # A household's income and spending are sealed at rest, so the database cannot check the
    # amount's sign: workflows.affordability refuses a negative one before it gets here.
    amount: Mapped[int] = mapped_column(EncryptedInteger("budget_line.amount"))
    frequency: Mapped[str] = mapped_column(String(16))
    explanation: Mapped[str | None] = mapped_column(EncryptedText("budget_line.explanation"))

    hardship_case: Mapped[HardshipCase] = relationship(back_populates="budget_lines")


class EvidenceFile(Base):
    """A file the borrower uploaded; the bytes live in storage under a random key."""

    __tablename__ = "evidence_file"
    __table_args__ = (
        one_of("kind", ("pdf", "jpeg", "png"), "kind"),
        CheckConstraint("size > 0", name="size_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hardship_case_id: Mapped[int] = mapped_column(ForeignKey("hardship_case.id"), index=True)
    storage_key: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(8))
    content_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[dt.datetime | None]

    hardship_case: Mapped[HardshipCase] = relationship(back_populates="evidence_files")


class Offer(Base):
    """Concrete terms shown to the borrower: generated within policy, proposed by the borrower or
    countered by an agent. `terms` holds the whole offer (schedule included) as it was shown."""

    __tablename__ = "offer"
    __table_args__ = (
        one_of("origin", OFFER_ORIGINS, "origin"),
        one_of("status", OFFER_STATUSES, "status"),
        CheckConstraint("total_repayable >= 0", name="total_repayable_not_negative"),
        CheckConstraint("waived_total >= 0", name="waived_total_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hardship_case_id: Mapped[int] = mapped_column(ForeignKey("hardship_case.id"), index=True)
    origin: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16), default="open")
    currency: Mapped[str] = mapped_column(String(3))
    instalment_amount: Mapped[int] = mapped_column(BigInteger)
    instalment_count: Mapped[int]
    total_repayable: Mapped[int] = mapped_column(BigInteger)
    waived_total: Mapped[int] = mapped_column(BigInteger)
    first_due_on: Mapped[dt.date | None] = mapped_column(Date)
    expires_on: Mapped[dt.date] = mapped_column(Date)
    terms: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[dt.datetime | None]

    hardship_case: Mapped[HardshipCase] = relationship(back_populates="offers")


class AccountPause(Base):
    """Breathing space: while it runs, late fees stop and/or outbound collection contact pauses.
    Every job that charges fees or contacts a borrower reads it (collections issue)."""

    __tablename__ = "account_pause"
    __table_args__ = (
        CheckConstraint("ends_on >= starts_on", name="ends_after_start"),
        Index("ix_account_pause_account_ends", "account_id", "ends_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    hardship_case_id: Mapped[int | None] = mapped_column(ForeignKey("hardship_case.id"))
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date] = mapped_column(Date)
    """The last day of the pause."""
    stops_fees: Mapped[bool]
    pauses_contact: Mapped[bool]
    lifted_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CaseNote(Base):
    """An internal note by staff on a case; never shown to the borrower."""

    __tablename__ = "case_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    hardship_case_id: Mapped[int] = mapped_column(ForeignKey("hardship_case.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    author: Mapped[StaffUser] = relationship()


class CaseMessage(Base):
    """What staff said to the borrower about the case (a question, a decision) and what the
    borrower answered; shown on both sides, in order."""

    __tablename__ = "case_message"
    __table_args__ = (
        one_of("kind", CASE_MESSAGE_KINDS, "kind"),
        one_of("direction", ("to_borrower", "from_borrower"), "direction"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hardship_case_id: Mapped[int] = mapped_column(ForeignKey("hardship_case.id"), index=True)
    direction: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
