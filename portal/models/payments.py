"""Payments through Stripe: one row per payment attempt (its idempotency key stored before Stripe
is called), the Stripe events seen, refunds, disputes, saved cards and autopay consent, the
credit balance an over-payment leaves, and the suspense items finance must resolve."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, utcnow
from portal.models._types import BigId, one_of

if TYPE_CHECKING:
    from portal.models.accounts import Account
    from portal.models.agreements import Plan, PlanInstalment
    from portal.models.parties import Borrower

PAYMENT_PURPOSES = ("overdue", "instalment", "amount", "balance", "autopay")
PAYMENT_ORIGINS = ("borrower", "autopay")
PAYMENT_STATUSES = (
    "created",  # the row and its idempotency key exist; Stripe has not been asked yet
    "submitting",  # Stripe is being (or was, before a crash) asked to create the PaymentIntent
    "requires_action",  # 3-D Secure: the borrower must authenticate in the page
    "processing",
    "succeeded",  # recorded: allocated and posted to the ledger
    "failed",
    "canceled",
    "suspense",  # Stripe took a different amount or currency than expected: finance decides
)
REFUND_STATUSES = (
    "awaiting_approval",
    "submitting",
    "pending",
    "succeeded",
    "failed",
    "canceled",
    "rejected",
)
DISPUTE_STATUSES = ("open", "won", "lost")
SUSPENSE_KINDS = ("amount_mismatch", "currency_mismatch", "unknown_payment")
SUSPENSE_STATUSES = ("open", "resolved")
EVENT_OUTCOMES = ("applied", "ignored", "waiting", "suspense")
EVENT_SOURCES = ("webhook", "catch_up")


class StripeCustomer(Base):
    """The Stripe customer that holds a borrower's saved cards (created on first payment)."""

    __tablename__ = "stripe_customer"

    borrower_id: Mapped[int] = mapped_column(ForeignKey("borrower.id"), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SavedCard(Base):
    """A card the borrower chose to keep for later payments and autopay. Only Stripe's
    PaymentMethod id and what the borrower needs to recognise it: brand, last four, expiry."""

    __tablename__ = "saved_card"

    id: Mapped[int] = mapped_column(primary_key=True)
    borrower_id: Mapped[int] = mapped_column(ForeignKey("borrower.id"), index=True)
    payment_method_id: Mapped[str] = mapped_column(String(255), unique=True)
    brand: Mapped[str] = mapped_column(String(32))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int]
    exp_year: Mapped[int]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[dt.datetime | None]


class AutopayMandate(Base):
    """The borrower's explicit consent that Accord charges a saved card for a plan's instalments
    when they fall due; revoked by the borrower at any time (the row stays as evidence)."""

    __tablename__ = "autopay_mandate"
    __table_args__ = (Index("ix_autopay_mandate_plan", "plan_id", "revoked_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plan.id"))
    saved_card_id: Mapped[int] = mapped_column(ForeignKey("saved_card.id"))
    consent_version: Mapped[str] = mapped_column(String(16))
    consent_text: Mapped[str] = mapped_column(String(1000))
    consented_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    consent_ip: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[dt.datetime | None]

    saved_card: Mapped[SavedCard] = relationship()


class Payment(Base):
    """One attempt to collect money through a Stripe PaymentIntent. The amount and currency are
    the server's; the idempotency key is stored (unique) before Stripe is called, so a retry after
    a crash finds this row instead of charging twice."""

    __tablename__ = "payment"
    __table_args__ = (
        one_of("purpose", PAYMENT_PURPOSES, "purpose"),
        one_of("origin", PAYMENT_ORIGINS, "origin"),
        one_of("status", PAYMENT_STATUSES, "status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("reversed_amount >= 0", name="reversed_not_negative"),
        UniqueConstraint("idempotency_key"),
        UniqueConstraint("payment_intent_id"),
        UniqueConstraint("receipt_number"),
        Index("ix_payment_account", "account_id", "id"),
        Index("ix_payment_status", "status", "updated_at"),
        Index("ix_payment_charge", "charge_id"),
        Index("ix_payment_instalment", "instalment_id", "attempt"),
        Index("ix_payment_received", "received_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    borrower_id: Mapped[int] = mapped_column(ForeignKey("borrower.id"))
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plan.id"))
    instalment_id: Mapped[int | None] = mapped_column(ForeignKey("plan_instalment.id"))
    purpose: Mapped[str] = mapped_column(String(16))
    origin: Mapped[str] = mapped_column(String(16), default="borrower")
    attempt: Mapped[int] = mapped_column(default=1)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    language: Mapped[str] = mapped_column(String(16), default="zh_Hans_CN")
    idempotency_key: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16), default="created")
    saved_card_id: Mapped[int | None] = mapped_column(ForeignKey("saved_card.id"))
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    charge_id: Mapped[str | None] = mapped_column(String(255))
    amount_received: Mapped[int | None] = mapped_column(BigInteger)
    received_currency: Mapped[str | None] = mapped_column(String(3))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(String(300))
    # Where the money went, fixed when it was recorded: {"components": {...}, "credit": n,
    # "instalments": {"<id>": n}}. Reversals are computed from it (workflows.payments).
    allocation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reversed_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    """How much of it is reversed now: refunds plus open or lost disputes, less disputes won."""
    receipt_number: Mapped[str | None] = mapped_column(String(32))
    recorded_at: Mapped[dt.datetime | None]
    received_on: Mapped[dt.date | None] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}

    account: Mapped[Account] = relationship()
    borrower: Mapped[Borrower] = relationship()
    plan: Mapped[Plan | None] = relationship()
    instalment: Mapped[PlanInstalment | None] = relationship()
    saved_card: Mapped[SavedCard | None] = relationship()
    refunds: Mapped[list[Refund]] = relationship(back_populates="payment", order_by="Refund.id")
    disputes: Mapped[list[Dispute]] = relationship(back_populates="payment", order_by="Dispute.id")


class Refund(Base):
    """Money given back on a payment, by finance or seen from Stripe. Pending and succeeded
    refunds count towards the payment's reversed amount, once the payment is recorded."""

    __tablename__ = "refund"
    __table_args__ = (
        one_of("status", REFUND_STATUSES, "status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        UniqueConstraint("stripe_refund_id"),
        UniqueConstraint("idempotency_key"),
        Index("ix_refund_payment", "payment_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payment.id"))
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255))
    idempotency_key: Mapped[str | None] = mapped_column(String(80))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(24))
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[dt.datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}

    payment: Mapped[Payment] = relationship(back_populates="refunds")


class Dispute(Base):
    """A chargeback: the funds are withdrawn when it opens (the payment's allocation is
    reversed), and given back if Accord wins (the allocation is restored)."""

    __tablename__ = "dispute"
    __table_args__ = (
        one_of("status", DISPUTE_STATUSES, "status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        UniqueConstraint("stripe_dispute_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payment.id"), index=True)
    stripe_dispute_id: Mapped[str] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(8), default="open")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[dt.datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}

    payment: Mapped[Payment] = relationship(back_populates="disputes")


class CreditEntry(Base):
    """Money held for the borrower beyond their whole debt (an over-payment), or its return.
    Append-only like the ledger; ``Account.credit_balance`` is its sum."""

    __tablename__ = "credit_entry"
    __table_args__ = (CheckConstraint("amount <> 0", name="amount_not_zero"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    cause: Mapped[str] = mapped_column(String(120))
    effective_on: Mapped[dt.date] = mapped_column(Date)
    posted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StripeEvent(Base):
    """Every Stripe event Accord has processed, stored in the same transaction as its effects:
    the primary key makes a redelivery a no-op."""

    __tablename__ = "stripe_event"
    __table_args__ = (
        one_of("outcome", EVENT_OUTCOMES, "outcome"),
        one_of("source", EVENT_SOURCES, "source"),
        Index("ix_stripe_event_object", "object_id"),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(255))
    stripe_created: Mapped[dt.datetime]
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class SuspenseItem(Base):
    """Money Stripe moved that Accord could not post as expected (a different amount or currency,
    or a PaymentIntent Accord never created): nothing is marked paid until finance resolves it."""

    __tablename__ = "suspense_item"
    __table_args__ = (
        one_of("kind", SUSPENSE_KINDS, "kind"),
        one_of("status", SUSPENSE_STATUSES, "status"),
        UniqueConstraint("kind", "stripe_object_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    stripe_object_id: Mapped[str] = mapped_column(String(255))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payment.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    expected_amount: Mapped[int | None] = mapped_column(BigInteger)
    expected_currency: Mapped[str | None] = mapped_column(String(3))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(8), default="open")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None]
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    resolution: Mapped[str | None] = mapped_column(String(300))
