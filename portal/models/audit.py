"""Audit events: who changed what, when, from where, with the state before and after."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, utcnow
from portal.models._types import BigId, one_of
from portal.models.accounts import ACTOR_TYPES


class AuditEvent(Base):
    __tablename__ = "audit_event"
    __table_args__ = (
        one_of("actor_type", ACTOR_TYPES, "actor_type"),
        Index("ix_audit_event_object", "object_type", "object_id"),
        # Decisions per staff member over a period (the supervisor's view).
        Index("ix_audit_event_action_occurred", "action", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None]
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
