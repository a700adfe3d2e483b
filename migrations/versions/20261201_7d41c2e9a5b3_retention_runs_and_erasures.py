"""retention: runs of the retention job (their report) and what each removed

retention_run holds one row per run of services/retention (as of which day, dry run or not, the
policy's period, who ran it, the counts per kind); retention_erasure one row per borrower
anonymised or hardship case cleared, unique, so a later run knows the work is done.

Revision ID: 7d41c2e9a5b3
Revises: 3bda8404f459
Create Date: 2026-12-01 01:12:21.774385
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7d41c2e9a5b3"
down_revision: str | None = "3bda8404f459"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retention_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("years", sa.Integer(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "actor_type IN ('staff', 'borrower', 'system')", name=op.f("ck_retention_run_actor_type")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_run")),
    )
    op.create_table(
        "retention_erasure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('borrower', 'hardship_case')", name=op.f("ck_retention_erasure_kind")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["retention_run.id"], name=op.f("fk_retention_erasure_run_id_retention_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_erasure")),
        sa.UniqueConstraint("kind", "object_id", name=op.f("uq_retention_erasure_kind_object_id")),
    )
    with op.batch_alter_table("retention_erasure", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_retention_erasure_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("retention_erasure", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retention_erasure_run_id"))
    op.drop_table("retention_erasure")
    op.drop_table("retention_run")
