"""account: index (stage, oldest_unpaid_due_on) instead of (stage, dpd); ledger_entry by day

The daily collections run rewrites days past due on every overdue account every day. With
``dpd`` in an index that UPDATE can never be a heap-only (HOT) update: each new row version
needs a new entry in every index of the table. Days past due on a day is the days since the
oldest unpaid due date, which changes only when the lender's schedule or a payment moves it, so
the run's late fees and stage actions ("dpd = 30") find their accounts by that date instead
("oldest_unpaid_due_on = day - 30"), and the stage stays the index's first column for the queues
that filter by stage.

ledger_entry gets an index on ``effective_on``: the run asks once per step which accounts already
have the day's accrual (its idempotency check) and reads only that day's entries, where without
it the check reads the whole (account_id, effective_on, id) index, which grows by a million
entries a day; the finance exports select entries by a span of days. Every entry of a day has
the same key, so the index stays small (B-tree deduplication) and its inserts go to its last page.

Revision ID: c3d8e1f4a7b9
Revises: a9e3f1c07b52
Create Date: 2026-12-01 02:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c3d8e1f4a7b9"
down_revision: str | None = "a9e3f1c07b52"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_account_stage_oldest_unpaid", "account", ["stage", "oldest_unpaid_due_on"])
    op.drop_index("ix_account_stage_dpd", table_name="account")
    op.create_index("ix_ledger_entry_effective_on", "ledger_entry", ["effective_on"])


def downgrade() -> None:
    op.drop_index("ix_ledger_entry_effective_on", table_name="ledger_entry")
    op.create_index("ix_account_stage_dpd", "account", ["stage", "dpd"])
    op.drop_index("ix_account_stage_oldest_unpaid", table_name="account")
