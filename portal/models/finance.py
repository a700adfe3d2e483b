"""Finance: Stripe's balance transactions as imported, reconciliation runs and the exceptions they
leave for someone to resolve, and the days finance has closed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, utcnow
from portal.models._types import one_of

IMPORT_SOURCES = ("api", "csv")
IMPORT_STATUSES = ("running", "completed", "failed")
EXCEPTION_KINDS = (
    "amount_mismatch",
    "fee_mismatch",
    "missing_in_ledger",
    "missing_in_stripe",
    "duplicate",
    "payout_mismatch",
    "suspense",
)
EXCEPTION_STATUSES = ("open", "awaiting_approval", "resolved")
RESOLUTIONS = ("linked", "corrected", "written_off", "noted")


class StripeImport(Base):
    """One import of balance transactions, from the API (resumable by its cursor) or a CSV file."""

    __tablename__ = "stripe_import"
    __table_args__ = (
        one_of("source", IMPORT_SOURCES, "source"),
        one_of("status", IMPORT_STATUSES, "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(8))
    filename: Mapped[str | None] = mapped_column(String(255))
    file_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    cursor: Mapped[str | None] = mapped_column(String(255))
    """The last balance transaction read from the API: a new run starts after it."""
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    problems: Mapped[list[Any]] = mapped_column(JSON, default=list)
    imported_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


class StripeBalanceTxn(Base):
    """A Stripe balance transaction (charge, refund, dispute withdrawal or reversal, fee, payout),
    stored once by its id however many times it is imported."""

    __tablename__ = "stripe_balance_txn"
    __table_args__ = (
        Index("ix_stripe_balance_txn_created", "created"),
        Index("ix_stripe_balance_txn_source", "source_id"),
        Index("ix_stripe_balance_txn_payout", "payout_id"),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    reporting_category: Mapped[str | None] = mapped_column(String(64))
    source_id: Mapped[str | None] = mapped_column(String(255))
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger, default=0)
    net: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created: Mapped[dt.datetime]
    available_on: Mapped[dt.date | None] = mapped_column(Date)
    payout_id: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(300))
    import_id: Mapped[int | None] = mapped_column(ForeignKey("stripe_import.id"))
    imported_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ReconciliationRun(Base):
    """One matching of Stripe against the ledger over a period, with its counts per outcome."""

    __tablename__ = "reconciliation_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    run_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    ran_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ReconciliationException(Base):
    """An item Stripe and the ledger disagree about, with its evidence, until someone resolves it:
    link it to a payment, book a correction (its own ledger entries), write it off (with a second
    person's approval), or note why it needs nothing. History is never edited."""

    __tablename__ = "reconciliation_exception"
    __table_args__ = (
        one_of("kind", EXCEPTION_KINDS, "kind"),
        one_of("status", EXCEPTION_STATUSES, "status"),
        UniqueConstraint("kind", "stripe_ref", "ledger_ref"),
        Index("ix_reconciliation_exception_open", "status", "day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    day: Mapped[dt.date] = mapped_column(Date)
    stripe_ref: Mapped[str] = mapped_column(String(255), default="")
    """The balance transaction (or payout, or suspense item) concerned; empty when none."""
    ledger_ref: Mapped[str] = mapped_column(String(64), default="")
    """The ledger record concerned, e.g. "payment:12"; empty when none."""
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    difference: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(24), default="open")
    resolution: Mapped[str | None] = mapped_column(String(16))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    linked_payment_id: Mapped[int | None] = mapped_column(ForeignKey("payment.id"))
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}


class DayClose(Base):
    """A closed day in one currency: its figures as they were, and who closed it. Later
    corrections post to the next open day."""

    __tablename__ = "day_close"
    __table_args__ = (UniqueConstraint("day", "currency"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)
    open_exceptions: Mapped[int] = mapped_column(default=0)
    note: Mapped[str | None] = mapped_column(Text)
    """Required when the day is closed with exceptions still open."""
    report_key: Mapped[str | None] = mapped_column(String(80))
    report_sha256: Mapped[str | None] = mapped_column(String(64))
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    closed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
