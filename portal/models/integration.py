"""The integration API's side of the database: lenders' API tokens, the events they pull (and
may have pushed to them), and the outgoing webhook endpoints with their delivery log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, utcnow
from portal.models._types import BigId, one_of

API_SCOPES = ("placements:write", "accounts:read", "events:read")
EVENT_TYPES = (
    "payment.succeeded",
    "payment.reversed",
    "payment.reinstated",
    "plan.signed",
    "plan.completed",
    "plan.broken",
    "concession.granted",
    "dispute.opened",
    "dispute.closed",
    "account.recalled",
)
DELIVERY_STATUSES = ("pending", "delivered", "failed")


class ApiToken(Base):
    """A lender's key to the API: shown once, stored as a SHA-256 of a 256-bit secret."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int] = mapped_column(ForeignKey("creditor.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # The public part of the token ("acc_<prefix>_<secret>"), to find it and to name it in lists.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]


class IntegrationEvent(Base):
    """Something a lender wants to hear about, written in the same transaction as the change.

    ``seq`` is handed out afterwards, in commit order, by ``services.integration_events.sequence``:
    ids come from a sequence and may commit out of order, so a reader paging by id could step
    over an event committed late. Readers page by ``seq`` and see only sequenced events.
    """

    __tablename__ = "integration_event"
    __table_args__ = (
        one_of("type", EVENT_TYPES, "type"),
        Index("ix_integration_event_creditor_seq", "creditor_id", "seq"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    creditor_id: Mapped[int] = mapped_column(ForeignKey("creditor.id"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class EventSequence(Base):
    """One row: the last ``seq`` handed out. Locked while sequencing, so sequencers take turns."""

    __tablename__ = "event_sequence"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class WebhookEndpoint(Base):
    """Where a lender wants its events pushed; signed with ``secret`` (HMAC-SHA256, Stripe-style)."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int] = mapped_column(ForeignKey("creditor.id"), index=True)
    url: Mapped[str] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(100))
    # None: every event type.
    event_types: Mapped[list[str] | None] = mapped_column(JSON)
    is_active: Mapped[bool] = mapped_column(default=True)
    # Deliveries exist for this endpoint's events up to this seq.
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[dt.datetime | None]


class WebhookDelivery(Base):
    """One event for one endpoint: retried with backoff until delivered or given up."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        one_of("status", DELIVERY_STATUSES, "status"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoint.id"))
    event_id: Mapped[int] = mapped_column(ForeignKey("integration_event.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[dt.datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookAttempt(Base):
    """The delivery log: every attempt, with what the lender's server answered."""

    __tablename__ = "webhook_attempt"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_delivery.id"), index=True)
    attempted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int] = mapped_column(default=0)
