"""history that cannot be rewritten: append-only tables, the application's grants, the audit hash chain

Two guards, on purpose:

- Triggers refuse UPDATE and DELETE (and, on PostgreSQL, TRUNCATE) on the ledger, the credit
  entries, the audit trail and its hash chain, for everyone — the owner that runs migrations
  included — and on SQLite as on PostgreSQL. They stop a mistake (a script, a console session,
  a cascade); the owner can still drop them on purpose.
- Grants (PostgreSQL, when ACCORD_DB_APP_ROLE names the role the application connects as; see
  portal.config.db_app_role) give that role SELECT and INSERT only on those tables, so the
  application cannot rewrite history even where a trigger was dropped, and cannot drop one:
  only the owner can. The role is created if missing (it logs in; the operator sets its
  password) and gets SELECT, INSERT, UPDATE, DELETE on every other table, USAGE on the
  sequences, SELECT alone on alembic_version (the readiness probe reads it), and the same on
  tables and sequences later migrations create (default privileges of the migrating owner). A
  later migration that creates another append-only table revokes UPDATE and DELETE on it itself.

The hash chain (services/audit_chain): audit_chain holds the links, audit_chain_head the
newest one (the row linkers lock), audit_chain_pending the events not linked yet — a trigger
adds every inserted audit event to it, whoever inserts it, so linking reads only what is new
rather than searching the whole trail for what no link names.

On SQLite a batch migration that alters one of these tables copies it and loses its triggers:
such a migration must create them again (tests/integration/test_history_immutable.py and
test_audit_chain.py fail otherwise).

Revision ID: 3bda8404f459
Revises: 0bac31ae7189
Create Date: 2026-11-30 22:26:04.338238
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from portal.config import db_app_role

revision: str = "3bda8404f459"
down_revision: str | None = "0bac31ae7189"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("ledger_entry", "credit_entry", "audit_event", "audit_chain")
REFUSE_FUNCTION = "accord_refuse_rewrite"


def upgrade() -> None:
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.CHAR(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    # The chain's one head row (services/audit_chain.link locks it): no link yet.
    op.execute(
        sa.text("INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 0, :genesis)").bindparams(
            genesis="0" * 64
        )
    )
    op.create_table(
        "audit_chain",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.CHAR(length=64), nullable=False),
        sa.Column("hash", sa.CHAR(length=64), nullable=False),
        sa.Column("chained_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["audit_event.id"], name=op.f("fk_audit_chain_event_id_audit_event")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_chain")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_chain_event_id")),
    )
    op.create_table(
        "audit_chain_pending",
        sa.Column("event_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["audit_event.id"], name=op.f("fk_audit_chain_pending_event_id_audit_event")
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_audit_chain_pending")),
    )
    # Every audit event written before this migration waits for its first link.
    op.execute("INSERT INTO audit_chain_pending (event_id) SELECT id FROM audit_event")
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_triggers()
        role = db_app_role()
        if role:
            _grant(role)
    else:
        _sqlite_triggers()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        role = db_app_role()
        if role:
            _revoke(role)
        op.execute("DROP TRIGGER audit_event_pending ON audit_event")
        op.execute("DROP FUNCTION accord_audit_event_pending()")
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute(f"DROP FUNCTION {REFUSE_FUNCTION}()")
    else:
        op.execute("DROP TRIGGER audit_event_pending")
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER {table}_no_update")
            op.execute(f"DROP TRIGGER {table}_no_delete")
    op.drop_table("audit_chain_pending")
    op.drop_table("audit_chain")
    op.drop_table("audit_chain_head")


def _sqlite_triggers() -> None:
    for table in APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
            )
    op.execute(
        "CREATE TRIGGER audit_event_pending AFTER INSERT ON audit_event "
        "BEGIN INSERT INTO audit_chain_pending (event_id) VALUES (NEW.id); END"
    )


def _postgresql_triggers() -> None:
    # integrity_constraint_violation: the drivers raise IntegrityError, as SQLite's RAISE(ABORT) does.
    op.execute(
        f"""
        CREATE FUNCTION {REFUSE_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END
        $$
        """
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {REFUSE_FUNCTION}()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {REFUSE_FUNCTION}()"
        )
    # Once per statement, so a bulk insert of audit events queues them in one insert.
    op.execute(
        """
        CREATE FUNCTION accord_audit_event_pending() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO audit_chain_pending (event_id) SELECT id FROM inserted;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_event_pending AFTER INSERT ON audit_event REFERENCING NEW TABLE AS inserted "
        "FOR EACH STATEMENT EXECUTE FUNCTION accord_audit_event_pending()"
    )


def _schema() -> str:
    schema = op.get_bind().scalar(sa.text("SELECT quote_ident(current_schema())"))
    assert isinstance(schema, str)
    return schema


def _grant(role: str) -> None:
    bind = op.get_bind()
    if bind.scalar(sa.text("SELECT current_user")) == role:
        raise RuntimeError(
            f"ACCORD_DB_APP_ROLE is {role!r}, the role running this migration: the application's "
            "role must be another, which does not own the tables"
        )
    # Another database on the same server may create the role at the same moment.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE "{role}" LOGIN;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END
        $$
        """
    )
    schema = _schema()
    # Only when missing: the schema may belong to another role (PostgreSQL 15's public schema
    # belongs to the database's owner, and PUBLIC may use it).
    if not bind.scalar(
        sa.text("SELECT has_schema_privilege(:role, current_schema(), 'USAGE')"), {"role": role}
    ):
        op.execute(f'GRANT USAGE ON SCHEMA {schema} TO "{role}"')
    op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO "{role}"')
    op.execute(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO "{role}"')
    op.execute(f'REVOKE UPDATE, DELETE ON {", ".join(APPEND_ONLY)} FROM "{role}"')
    op.execute(f'REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM "{role}"')
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{role}"'
    )
    op.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE ON SEQUENCES TO "{role}"')


def _revoke(role: str) -> None:
    """Take back the grants on tables and sequences; the role and its use of the schema stay
    (other databases, or the operator, may rely on them)."""
    schema = _schema()
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
        f'REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM "{role}"'
    )
    op.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE USAGE ON SEQUENCES FROM "{role}"')
    op.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM "{role}"')
    op.execute(f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM "{role}"')
