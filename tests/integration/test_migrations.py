"""The models and the migrations agree, and the migrations run both ways on this database."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, create_engine, inspect, text
from sqlalchemy.engine import make_url

from portal.db import Base, make_engine
from portal.migrations import alembic_config


# SQLite's reflection cannot read an index on an expression (SQLAlchemy skips it, and Alembic then
# skips the models' own): test_every_index_on_an_expression_exists checks those by name.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_autogenerate_finds_no_difference_between_models_and_migrations(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_the_database_is_at_the_single_head(database_url: str) -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, "migrations have branched: merge them"
    engine = make_engine(database_url)
    with engine.connect() as conn:
        assert set(MigrationContext.configure(conn).get_current_heads()) == set(heads)
    engine.dispose()


def _scratch(database_url: str, tmp_path: Path) -> str:
    """An empty database of the same kind as the tests' own."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{tmp_path / 'scratch.db'}"
    name = f"{url.database}_migrations"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def test_migrations_downgrade_to_nothing_and_upgrade_again(database_url: str, tmp_path: Path) -> None:
    scratch = _scratch(database_url, tmp_path)
    cfg = alembic_config(scratch)
    command.upgrade(cfg, "head")
    command.downgrade(cfg, "base")
    engine = make_engine(scratch)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    command.upgrade(cfg, "head")
    engine = make_engine(scratch)
    assert "ledger_entry" in inspect(engine).get_table_names()
    engine.dispose()


def test_a_table_other_rows_refer_to_is_altered_with_its_rows_kept(database_url: str, tmp_path: Path) -> None:
    """SQLite alters a table by copying it and dropping the original, which fails while foreign
    keys are enforced and other tables' rows refer to it: here b8e4d2a61f37, which changes a check
    constraint of placement_import, on a database holding imports and their refused rows."""
    scratch = _scratch(database_url, tmp_path)
    cfg = alembic_config(scratch)
    command.upgrade(cfg, "7c41d9e2b6a3")
    engine = make_engine(scratch)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO creditor (id, code, name, created_at) VALUES (1, 'L', 'L', CURRENT_TIMESTAMP)")
        )
        conn.execute(
            text(
                "INSERT INTO placement_import (id, creditor_id, source, filename, sha256, size_bytes,"
                " dry_run, status, rows_total, rows_accepted, rows_rejected, accounts_created,"
                " accounts_updated, accounts_unchanged, borrowers_created, borrowers_updated,"
                " adjustment_entries, actor_type, started_at)"
                " VALUES (1, 1, 'cli', 'a.csv', :sha, 10, false, 'applied', 1, 0, 1, 0, 0, 0, 0, 0, 0,"
                " 'system', CURRENT_TIMESTAMP)"
            ),
            {"sha": "0" * 64},
        )
        conn.execute(
            text(
                'INSERT INTO placement_rejection (import_id, line, "column", code, message)'
                " VALUES (1, 2, 'email', 'email_invalid', 'x is not an e-mail address.')"
            )
        )
    engine.dispose()

    command.upgrade(cfg, "head")
    command.downgrade(cfg, "-1")
    command.upgrade(cfg, "head")

    engine = make_engine(scratch)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, status FROM placement_import")).all() == [(1, "applied")]
        assert conn.execute(text("SELECT import_id, line FROM placement_rejection")).all() == [(1, 2)]
        conn.execute(text("UPDATE placement_import SET status = 'queued'"))  # the new status is allowed
        conn.rollback()
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # enforced again
    engine.dispose()


def test_migrations_create_every_check_constraint_the_models_declare(database_url: str) -> None:
    # Autogenerate compares columns and indexes but not check constraints; this compares those.
    from sqlalchemy import CheckConstraint

    engine = make_engine(database_url)
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        declared = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
        in_database = {c["name"] for c in inspector.get_check_constraints(table.name)}
        assert declared <= in_database, f"{table.name}: missing {sorted(declared - in_database)}"
    engine.dispose()


def test_every_index_on_an_expression_exists(database_url: str) -> None:
    declared = {
        index.name
        for table in Base.metadata.tables.values()
        for index in table.indexes
        if any(not isinstance(expression, Column) for expression in index.expressions)
    }
    assert "ix_account_reference_upper" in declared
    engine = make_engine(database_url)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            found = set(conn.scalars(text("SELECT name FROM sqlite_master WHERE type = 'index'")))
        else:
            found = set(
                conn.scalars(text("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"))
            )
    engine.dispose()
    assert declared <= found
