"""Retention: each run of the job that removes personal data past the policy's period, with its
report, and what it removed (so a later run knows it is done)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, utcnow
from portal.models._types import one_of
from portal.models.accounts import ACTOR_TYPES

ERASURE_KINDS = ("borrower", "hardship_case")


class RetentionRun(Base):
    """One run of the retention job (services/retention): the day it judged as of, whether it was a
    dry run (which changes nothing and says what would be done), the policy's period, who ran it,
    and how many of each thing it removed (or would have)."""

    __tablename__ = "retention_run"
    __table_args__ = (one_of("actor_type", ACTOR_TYPES, "actor_type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ran_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    as_of: Mapped[dt.date] = mapped_column(Date)
    dry_run: Mapped[bool]
    years: Mapped[int]
    """The policy's period the run applied."""
    policy_version: Mapped[int | None]
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None]
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Per kind: borrowers_anonymised, cases_cleared, evidence_files_deleted, budget_lines_deleted,
    documents_deleted, texts_cleared, letter_batches_deleted, placement_rejections_deleted,
    stripe_payloads_minimised."""
    finished_at: Mapped[dt.datetime | None]


class RetentionErasure(Base):
    """A borrower anonymised or a hardship case cleared, by which run: one row each, ever."""

    __tablename__ = "retention_erasure"
    __table_args__ = (
        one_of("kind", ERASURE_KINDS, "kind"),
        UniqueConstraint("kind", "object_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("retention_run.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[int]
    erased_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
