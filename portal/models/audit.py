"""Audit events: who changed what, when, from where, with the state before and after; and the
hash chain that links them in the order they were committed (see services/audit_chain)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CHAR, JSON, BigInteger, ForeignKey, Index, String
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


class AuditChain(Base):
    """One link of the audit trail's hash chain: the ``seq``-th audit event chained, the previous
    link's hash, and the SHA-256 of that hash and the event (workflows/audit_chain). Rows are
    inserted, never updated or deleted."""

    __tablename__ = "audit_chain"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("audit_event.id"), unique=True)
    prev_hash: Mapped[str] = mapped_column(CHAR(64))
    hash: Mapped[str] = mapped_column(CHAR(64))
    chained_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditChainHead(Base):
    """One row: the chain's newest link (``seq`` 0 and 64 zeros before the first). Linkers lock
    it, so they take turns; the verification checks the chain ends exactly here."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(CHAR(64))


class AuditChainPending(Base):
    """An audit event committed and not linked yet. A database trigger adds a row for every
    audit event inserted (through ``audit.record`` or a bulk insert alike); linking removes it,
    so the linker reads only what is new. No foreign key: the trigger takes the ids from the
    rows just inserted, and a key checked them again row by row (migration 7c41d9e2b6a3)."""

    __tablename__ = "audit_chain_pending"

    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
