"""placement_import: uploads queued for a background job, their file's storage key

An admin's upload was placed inside the web request. A file of the most rows an import takes
(200,000) needs longer than a web server's worker is allowed (gunicorn kills it after 30 s): the
worker died, the transaction rolled back, and the admin was left with an error page and no
report. An upload is now stored (sealed) and its import recorded as ``queued``; a Huey job claims
it (``running``), places it and deletes the stored file (``upload_key``).

Revision ID: b8e4d2a61f37
Revises: 7c41d9e2b6a3
Create Date: 2026-12-02 14:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b8e4d2a61f37"
down_revision: str | None = "7c41d9e2b6a3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FINAL = "'validated', 'applied', 'refused', 'failed'"


def upgrade() -> None:
    with op.batch_alter_table("placement_import", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upload_key", sa.String(length=80), nullable=True))
        # Autogenerate does not see check constraints on existing tables: a new status.
        batch_op.drop_constraint(op.f("ck_placement_import_status"), type_="check")
        batch_op.create_check_constraint("status", f"status IN ('queued', 'running', {_FINAL})")


def downgrade() -> None:
    # Imports still waiting have no outcome the older schema can hold: they are recorded as failed.
    op.execute(
        "UPDATE placement_import SET status = 'failed', error_code = 'import_interrupted' "
        "WHERE status = 'queued'"
    )
    with op.batch_alter_table("placement_import", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_placement_import_status"), type_="check")
        batch_op.create_check_constraint("status", f"status IN ('running', {_FINAL})")
        batch_op.drop_column("upload_key")
