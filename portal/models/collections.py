"""Collections: the daily run and what it creates, the contact history the rules read, the
borrower's contact preferences and disputes, and the collector's promises, visits and referrals."""

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
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, utcnow
from portal.models._types import BigId, one_of
from workflows.policy import Stage

if TYPE_CHECKING:
    from portal.models.accounts import Account
    from portal.models.parties import Borrower

RUN_STATUSES = ("running", "completed")
RUN_STEPS = ("dpd_stage", "interest", "late_fees", "instalments", "promises", "actions")
ACTION_KINDS = ("reminder", "sms", "email", "letter", "call_task", "home_visit_proposal", "legal_review")
ACTION_STATUSES = ("pending", "sent", "done", "blocked", "cancelled")
CONTACT_CHANNELS = ("call", "sms", "email", "letter", "app", "home_visit")
CONTACT_PARTIES = ("borrower", "related_third_party", "unrelated_third_party")
CONTACT_OUTCOMES = (
    "sent",
    "reached",
    "promise_to_pay",
    "refused",
    "wrong_number",
    "no_answer",
    "third_party",
    "callback_requested",
    "dispute_raised",
    "hardship_referred",
)
PROMISE_STATUSES = ("open", "kept", "broken", "cancelled")
VISIT_STATUSES = ("notify", "evaluate", "dispatch", "meet", "agreement", "closed", "cancelled")
REFERRAL_STATUSES = ("pending", "approved", "rejected")
DEBT_DISPUTE_REASONS = ("not_mine", "amount_wrong", "already_paid", "fraud", "other")
DEBT_DISPUTE_STATUSES = ("open", "upheld", "rejected", "withdrawn")


class CollectionRun(Base):
    """One day's run. Its steps are recorded as they finish, so a run interrupted half-way
    resumes at the first step not done; every step is idempotent for its date on its own."""

    __tablename__ = "collection_run"
    __table_args__ = (one_of("status", RUN_STATUSES, "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_date: Mapped[dt.date] = mapped_column(Date, unique=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    steps_done: Mapped[list[str]] = mapped_column(JSON, default=list)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    policy_version: Mapped[int | None]
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


class StageHistory(Base):
    """When an account entered a stage and when it left it (``left_on`` empty: still there)."""

    __tablename__ = "stage_history"
    __table_args__ = (
        one_of("stage", [s.value for s in Stage], "stage"),
        UniqueConstraint("account_id", "entered_on", "stage"),
        Index("ix_stage_history_open", "account_id", "left_on"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    stage: Mapped[str] = mapped_column(String(16))
    entered_on: Mapped[dt.date] = mapped_column(Date)
    left_on: Mapped[dt.date | None] = mapped_column(Date)


class CollectionAction(Base):
    """What the strategy asks for on a day: a message to send, a call to make, a visit to
    propose, a legal review. Unique per account, rule and day, so a rerun creates nothing new.
    Messages are sent, and calls offered, only when the contact rules allow it."""

    __tablename__ = "collection_action"
    __table_args__ = (
        one_of("kind", ACTION_KINDS, "kind"),
        one_of("status", ACTION_STATUSES, "status"),
        one_of("stage", [s.value for s in Stage], "stage"),
        UniqueConstraint("account_id", "rule_key", "run_date"),
        Index("ix_collection_action_work", "status", "kind", "stage", "priority"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    run_date: Mapped[dt.date] = mapped_column(Date)
    rule_key: Mapped[str] = mapped_column(String(64))
    """Which step of which stage's strategy made it, e.g. "early:sms:dpd3"."""
    kind: Mapped[str] = mapped_column(String(24))
    channel: Mapped[str | None] = mapped_column(String(16))
    template: Mapped[str | None] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    blocked_reason: Mapped[str | None] = mapped_column(String(64))
    next_allowed_at: Mapped[dt.datetime | None]
    assigned_to_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    done_at: Mapped[dt.datetime | None]

    account: Mapped[Account] = relationship()


class ContactPreference(Base):
    """The borrower's choices: channels they opted out of, a request to stop contact, and
    consent to contact in the wider hours the rules allow with consent."""

    __tablename__ = "contact_preference"

    borrower_id: Mapped[int] = mapped_column(ForeignKey("borrower.id"), primary_key=True)
    opted_out_channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    cease_contact_at: Mapped[dt.datetime | None]
    consent_extended_hours: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}


class ContactAttempt(Base):
    """Every contact made or attempted, by a person or the run: the history the rules read."""

    __tablename__ = "contact_attempt"
    __table_args__ = (
        one_of("channel", CONTACT_CHANNELS, "channel"),
        one_of("party", CONTACT_PARTIES, "party"),
        one_of("outcome", CONTACT_OUTCOMES, "outcome"),
        Index("ix_contact_attempt_borrower_at", "borrower_id", "at"),
        Index("ix_contact_attempt_account_at", "account_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    borrower_id: Mapped[int] = mapped_column(ForeignKey("borrower.id"))
    action_id: Mapped[int | None] = mapped_column(ForeignKey("collection_action.id"))
    channel: Mapped[str] = mapped_column(String(16))
    party: Mapped[str] = mapped_column(String(24), default="borrower")
    address: Mapped[str | None] = mapped_column(String(254))
    """The number or address contacted."""
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reached: Mapped[bool] = mapped_column(default=False)
    conversation: Mapped[bool] = mapped_column(default=False)
    outcome: Mapped[str] = mapped_column(String(24))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    notes: Mapped[str | None] = mapped_column(Text)


class PromiseToPay(Base):
    """A borrower's promise, taken by a collector: kept or broken is decided by the daily run."""

    __tablename__ = "promise_to_pay"
    __table_args__ = (
        one_of("status", PROMISE_STATUSES, "status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_promise_to_pay_open", "status", "due_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    promised_on: Mapped[dt.date] = mapped_column(Date)
    due_on: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="open")
    paid_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    decided_on: Mapped[dt.date | None] = mapped_column(Date)
    taken_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    contact_attempt_id: Mapped[int | None] = mapped_column(ForeignKey("contact_attempt.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class HomeVisit(Base):
    """A field visit, in the order notify → evaluate → dispatch → meet → agreement; at least
    two collectors, named, who identify themselves."""

    __tablename__ = "home_visit"
    __table_args__ = (one_of("status", VISIT_STATUSES, "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    action_id: Mapped[int | None] = mapped_column(ForeignKey("collection_action.id"))
    status: Mapped[str] = mapped_column(String(16), default="notify")
    planned_for: Mapped[dt.datetime | None]
    collector_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    identified: Mapped[bool] = mapped_column(default=False)
    outcome: Mapped[str | None] = mapped_column(String(24))
    notes: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}


class LegalReferral(Base):
    """A request to refer an account for legal review; a supervisor approves or rejects it."""

    __tablename__ = "legal_referral"
    __table_args__ = (one_of("status", REFERRAL_STATUSES, "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str] = mapped_column(Text)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    decision_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[dt.datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}


class DebtDispute(Base):
    """The borrower disputes the debt: collection contact about the account stops until staff
    resolve it (upheld, or rejected with reasons)."""

    __tablename__ = "debt_dispute"
    __table_args__ = (
        one_of("reason", DEBT_DISPUTE_REASONS, "reason"),
        one_of("status", DEBT_DISPUTE_STATUSES, "status"),
        Index("ix_debt_dispute_open", "account_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    borrower_id: Mapped[int] = mapped_column(ForeignKey("borrower.id"))
    reason: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)
    evidence_keys: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Storage keys of files the borrower attached (the evidence store)."""
    status: Mapped[str] = mapped_column(String(16), default="open")
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    resolution: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}

    borrower: Mapped[Borrower] = relationship()
