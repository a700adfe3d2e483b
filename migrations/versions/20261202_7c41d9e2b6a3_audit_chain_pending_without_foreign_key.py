"""audit_chain_pending: no foreign key to audit_event

Every statement that inserts audit events fills audit_chain_pending with their ids, through the
trigger ``audit_event_pending`` (3bda8404f459): on PostgreSQL once per statement, from the rows
the statement inserted. The foreign key then checked, row by row at the end of that statement,
that each of those events exists — the events the statement had just inserted. Nothing else
writes the table, and the linker (services/audit_chain.link) reads it joined to audit_event, so an
id with no event could not be linked by mistake either. The checks were pure waiting at the end of
every bulk insert: 0.8 s of a 19 s placement import of 100,000 accounts (180,000 events; the
audit events' COPY waited 1.08 s for the server with the key, 0.31 s without; bench/README.md).

SQLite recreates the table to drop the key (a batch operation). The table has no trigger of its
own, but SQLite checks every trigger's body when the copy is renamed into place, and the one
that fills the table (on audit_event) names it: that trigger is dropped for the operation and
created again, the same, after it.

Revision ID: 7c41d9e2b6a3
Revises: 265e0ffa5282
Create Date: 2026-12-02 05:10:00
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from alembic import op

revision: str = "7c41d9e2b6a3"
down_revision: str | None = "265e0ffa5282"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEY = "fk_audit_chain_pending_event_id_audit_event"
SQLITE_TRIGGER = (
    "CREATE TRIGGER audit_event_pending AFTER INSERT ON audit_event "
    "BEGIN INSERT INTO audit_chain_pending (event_id) VALUES (NEW.id); END"
)


@contextmanager
def _sqlite_trigger_set_aside() -> Iterator[None]:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP TRIGGER audit_event_pending")
    yield
    if sqlite:
        op.execute(SQLITE_TRIGGER)


def upgrade() -> None:
    with _sqlite_trigger_set_aside(), op.batch_alter_table("audit_chain_pending") as batch:
        batch.drop_constraint(FOREIGN_KEY, type_="foreignkey")


def downgrade() -> None:
    with _sqlite_trigger_set_aside(), op.batch_alter_table("audit_chain_pending") as batch:
        batch.create_foreign_key(FOREIGN_KEY, "audit_event", ["event_id"], ["id"])
