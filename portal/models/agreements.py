"""Repayment agreements (generated, signed, sealed) and the plans they put in force."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, utcnow
from portal.models._types import one_of

if TYPE_CHECKING:
    from portal.models.accounts import Account
    from portal.models.hardship import HardshipCase, Offer
    from portal.models.parties import Borrower

AGREEMENT_STATUSES = ("preparing", "ready", "signed", "voided", "expired", "failed")
AGREEMENT_EVENTS = (
    "created",
    "rendered",
    "viewed",
    "consented",
    "code_sent",
    "code_verified",
    "signed",
    "sealed",
    "voided",
    "expired",
)
PLAN_STATUSES = ("active", "completed", "broken")
INSTALMENT_STATUSES = ("due", "paid", "missed")


class Agreement(Base):
    """The document that makes an approved offer binding. The PDF as generated and the signed,
    sealed PDF are stored content-addressed; their SHA-256 are kept here from the first byte."""

    __tablename__ = "agreement"
    __table_args__ = (
        one_of("status", AGREEMENT_STATUSES, "status"),
        one_of("language", ("zh_Hans_CN", "en"), "language"),
        Index("ix_agreement_case", "hardship_case_id"),
        Index("ix_agreement_final_sha256", "final_sha256"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hardship_case_id: Mapped[int] = mapped_column(ForeignKey("hardship_case.id"))
    offer_id: Mapped[int] = mapped_column(ForeignKey("offer.id"))
    borrower_id: Mapped[int] = mapped_column(ForeignKey("borrower.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    status: Mapped[str] = mapped_column(String(16), default="preparing")
    language: Mapped[str] = mapped_column(String(16))
    template_version: Mapped[str] = mapped_column(String(16))
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)
    """Everything the document states (parties, balances, concessions, schedule, policy facts),
    frozen when it was prepared: the HTML view and the PDF are both rendered from it."""
    document_sha256: Mapped[str | None] = mapped_column(String(64))
    document_key: Mapped[str | None] = mapped_column(String(80))
    final_sha256: Mapped[str | None] = mapped_column(String(64))
    final_key: Mapped[str | None] = mapped_column(String(80))
    expires_on: Mapped[dt.date] = mapped_column(Date)
    consent_version: Mapped[str | None] = mapped_column(String(16))
    consented_at: Mapped[dt.datetime | None]
    step_up_token_hash: Mapped[str | None] = mapped_column(String(64))
    code_verified_at: Mapped[dt.datetime | None]
    code_channel: Mapped[str | None] = mapped_column(String(64))
    """The masked phone or e-mail the signing code went to."""
    typed_name: Mapped[str | None] = mapped_column(String(200))
    signature_sha256: Mapped[str | None] = mapped_column(String(64))
    signer_ip: Mapped[str | None] = mapped_column(String(64))
    signer_user_agent: Mapped[str | None] = mapped_column(String(300))
    signed_at: Mapped[dt.datetime | None]
    voided_at: Mapped[dt.datetime | None]
    void_reason: Mapped[str | None] = mapped_column(String(300))
    voided_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}

    hardship_case: Mapped[HardshipCase] = relationship()
    offer: Mapped[Offer] = relationship()
    borrower: Mapped[Borrower] = relationship()
    account: Mapped[Account] = relationship()
    events: Mapped[list[AgreementEvent]] = relationship(order_by="AgreementEvent.id")


class AgreementEvent(Base):
    """One step of the signing, with its time: the evidence the certificate page lists."""

    __tablename__ = "agreement_event"
    __table_args__ = (one_of("kind", AGREEMENT_EVENTS, "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreement.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Plan(Base):
    """A signed agreement in force: instalments with due dates and amounts."""

    __tablename__ = "plan"
    __table_args__ = (
        one_of("status", PLAN_STATUSES, "status"),
        UniqueConstraint("agreement_id"),
        CheckConstraint("total > 0", name="total_positive"),
        Index("ix_plan_account_status", "account_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    hardship_case_id: Mapped[int] = mapped_column(ForeignKey("hardship_case.id"))
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreement.id"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[int] = mapped_column(BigInteger)
    grace_days: Mapped[int]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    completed_on: Mapped[dt.date | None] = mapped_column(Date)
    broken_on: Mapped[dt.date | None] = mapped_column(Date)
    break_reason: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}

    instalments: Mapped[list[PlanInstalment]] = relationship(order_by="PlanInstalment.number")


class PlanInstalment(Base):
    __tablename__ = "plan_instalment"
    __table_args__ = (
        UniqueConstraint("plan_id", "number"),
        one_of("status", INSTALMENT_STATUSES, "status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("paid_amount >= 0 AND paid_amount <= amount", name="paid_within_amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plan.id"))
    number: Mapped[int]
    due_on: Mapped[dt.date] = mapped_column(Date)
    amount: Mapped[int] = mapped_column(BigInteger)
    paid_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(8), default="due")
    paid_on: Mapped[dt.date | None] = mapped_column(Date)
    missed_on: Mapped[dt.date | None] = mapped_column(Date)
    """The day the daily run found it unpaid after the grace days (it stays owed)."""

    @property
    def outstanding(self) -> int:
        return self.amount - self.paid_amount
