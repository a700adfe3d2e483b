"""Placements: accounts handed to Accord by a lender in a file (or through the API), each import
with its counts and the rows it refused."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, utcnow
from portal.models._types import BigId, one_of
from portal.models.accounts import ACTOR_TYPES

PLACEMENT_SOURCES = ("upload", "cli", "api")
# (queued →) running → validated (a dry run: nothing applied) | applied | refused (the file itself
# was unreadable: nothing applied) | failed (an error of ours, or the import was interrupted:
# nothing applied, the transaction rolled back). Uploads wait queued for their background job.
PLACEMENT_STATUSES = ("queued", "running", "validated", "applied", "refused", "failed")
# The report keeps this many refused rows; the counts cover them all.
MAX_STORED_REJECTIONS = 10_000


class PlacementImport(Base):
    __tablename__ = "placement_import"
    __table_args__ = (
        one_of("source", PLACEMENT_SOURCES, "source"),
        one_of("status", PLACEMENT_STATUSES, "status"),
        one_of("actor_type", ACTOR_TYPES, "actor_type"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int] = mapped_column(ForeignKey("creditor.id"), index=True)
    source: Mapped[str] = mapped_column(String(8))
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    encoding: Mapped[str | None] = mapped_column(String(16))
    dry_run: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="running")
    # The storage key of an uploaded file while its import waits or runs; deleted, and this
    # cleared, once the import has finished.
    upload_key: Mapped[str | None] = mapped_column(String(80))
    # Why the whole file was refused (status "refused" or "failed"): a code and an English sentence.
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(500))
    rows_total: Mapped[int] = mapped_column(default=0)
    rows_accepted: Mapped[int] = mapped_column(default=0)
    rows_rejected: Mapped[int] = mapped_column(default=0)
    accounts_created: Mapped[int] = mapped_column(default=0)
    accounts_updated: Mapped[int] = mapped_column(default=0)
    accounts_unchanged: Mapped[int] = mapped_column(default=0)
    borrowers_created: Mapped[int] = mapped_column(default=0)
    borrowers_updated: Mapped[int] = mapped_column(default=0)
    adjustment_entries: Mapped[int] = mapped_column(default=0)
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None]
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


class PlacementRejection(Base):
    """One refused row (or cell) of an import: the line in the file, the column and why."""

    __tablename__ = "placement_rejection"
    __table_args__ = (Index("ix_placement_rejection_import_line", "import_id", "line"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("placement_import.id"))
    line: Mapped[int]  # 1 is the header; for the API, the index of the object in the request
    column: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(String(500))  # English, filled in
    account_reference: Mapped[str | None] = mapped_column(String(64))
