"""History that cannot be rewritten: ledger entries, credit entries, audit events and the audit
chain's links can be added and read, never updated or deleted — by the database's triggers for
everyone, on both databases, and on PostgreSQL by the grants of the application's role, which
hold even where a trigger is out of the way."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, make_url, select, text
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.orm import Session

from portal.config import db_app_role
from portal.migrations import alembic_config
from portal.models import Account, AuditChain, CreditEntry, LedgerEntry
from portal.services import audit, audit_chain
from portal.services.audit import SYSTEM
from tests import factories
from tests.conftest import _prepare_postgres

APPEND_ONLY = ("ledger_entry", "credit_entry", "audit_event", "audit_chain")


@dataclass
class Row:
    """One row of an append-only table: how to find it, and a column to try to change."""

    table: str
    key: str
    key_value: int
    column: str
    new_value: Any
    obj: Any


@pytest.fixture
def rows(session: Session) -> dict[str, Row]:
    """A row in each append-only table, written the way the application writes them."""
    account = factories.account(session, principal=10_000)
    credit = CreditEntry(
        account_id=account.id, amount=500, cause="test:credit", effective_on=dt.date(2026, 11, 30)
    )
    session.add(credit)
    event = audit.record(session, SYSTEM, "test.history", "account", account.id, after={"n": 1})
    session.commit()
    assert audit_chain.link(session) >= 1
    entry = session.scalars(select(LedgerEntry).where(LedgerEntry.account_id == account.id)).one()
    link = session.scalars(select(AuditChain).where(AuditChain.event_id == event.id)).one()
    return {
        "ledger_entry": Row("ledger_entry", "id", entry.id, "amount", 1, entry),
        "credit_entry": Row("credit_entry", "id", credit.id, "amount", 1, credit),
        "audit_event": Row("audit_event", "id", event.id, "action", "test.rewritten", event),
        "audit_chain": Row("audit_chain", "seq", link.seq, "hash", "f" * 64, link),
    }


def _value(session: Session, row: Row) -> Any:
    return session.execute(
        text(f"SELECT {row.column} FROM {row.table} WHERE {row.key} = :key"), {"key": row.key_value}
    ).scalar_one()


@pytest.mark.parametrize("table", APPEND_ONLY)
def test_updating_a_row_through_the_orm_is_refused_and_changes_nothing(
    session: Session, rows: dict[str, Row], table: str
) -> None:
    row = rows[table]
    before = _value(session, row)
    savepoint = session.begin_nested()
    setattr(row.obj, row.column, row.new_value)
    with pytest.raises(IntegrityError, match=f"{table} is append-only: UPDATE refused"):
        session.flush()
    savepoint.rollback()
    session.expire(row.obj)
    assert getattr(row.obj, row.column) == before == _value(session, row)


@pytest.mark.parametrize("table", APPEND_ONLY)
def test_deleting_a_row_through_the_orm_is_refused_and_keeps_it(
    session: Session, rows: dict[str, Row], table: str
) -> None:
    row = rows[table]
    savepoint = session.begin_nested()
    session.delete(row.obj)
    with pytest.raises(IntegrityError, match=f"{table} is append-only: DELETE refused"):
        session.flush()
    savepoint.rollback()
    assert _value(session, row) is not None


@pytest.mark.parametrize("table", APPEND_ONLY)
def test_updating_a_row_in_sql_is_refused_and_changes_nothing(
    session: Session, rows: dict[str, Row], table: str
) -> None:
    row = rows[table]
    before = _value(session, row)
    with (
        pytest.raises(IntegrityError, match=f"{table} is append-only: UPDATE refused"),
        session.begin_nested(),
    ):
        session.execute(
            text(f"UPDATE {table} SET {row.column} = :value WHERE {row.key} = :key"),
            {"value": row.new_value, "key": row.key_value},
        )
    assert _value(session, row) == before


@pytest.mark.parametrize("where", ["one row", "every row"])
@pytest.mark.parametrize("table", APPEND_ONLY)
def test_deleting_in_sql_is_refused_and_keeps_the_rows(
    session: Session, rows: dict[str, Row], table: str, where: str
) -> None:
    row = rows[table]
    count = session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    statement = f"DELETE FROM {table}" + (f" WHERE {row.key} = :key" if where == "one row" else "")
    with (
        pytest.raises(IntegrityError, match=f"{table} is append-only: DELETE refused"),
        session.begin_nested(),
    ):
        session.execute(text(statement), {"key": row.key_value})
    assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == count


def test_adding_to_history_still_works(session: Session, rows: dict[str, Row]) -> None:
    account = session.get(Account, rows["credit_entry"].obj.account_id)
    assert account is not None
    audit.record(session, SYSTEM, "test.more_history", "account", account.id)
    session.add(
        CreditEntry(
            account_id=account.id, amount=-500, cause="test:refund", effective_on=dt.date(2026, 12, 1)
        )
    )
    session.commit()
    assert audit_chain.link(session) == 1


# --- PostgreSQL: the application's role --------------------------------------------------------


def _postgres_only(database_url: str) -> None:
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("roles and grants are PostgreSQL's (set ACCORD_TEST_DATABASE_URL)")


@pytest.fixture
def app_role(database_url: str) -> str:
    _postgres_only(database_url)
    role = db_app_role()
    assert role, "tests/conftest.py sets ACCORD_DB_APP_ROLE for the migrations"
    return role


@pytest.fixture
def as_app_role(database_url: str, app_role: str) -> Iterator[Session]:
    """A session connected as the application's role (same server and database), in a
    transaction rolled back at the end."""
    engine = create_engine(make_url(database_url).set(username=app_role, password=None))
    connection = engine.connect()
    transaction = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        transaction.rollback()
        connection.close()
        engine.dispose()


def test_the_application_role_adds_and_reads_history_and_links_the_chain(as_app_role: Session) -> None:
    session = as_app_role
    account = factories.account(session, principal=25_000)  # accounts, ledger entries, audit events
    session.add(
        CreditEntry(
            account_id=account.id, amount=100, cause="test:credit", effective_on=dt.date(2026, 11, 30)
        )
    )
    session.commit()
    assert session.scalar(select(LedgerEntry.amount).where(LedgerEntry.account_id == account.id)) == 25_000
    assert audit_chain.link(session) >= 1
    assert audit_chain.verify(session).broken is None
    # Its grants are not read-only: the rest of the schema is its to change.
    account.status = "closed"
    session.commit()


@pytest.mark.parametrize("table", APPEND_ONLY)
@pytest.mark.parametrize("statement", ["UPDATE {table} SET {column} = {column}", "DELETE FROM {table}"])
def test_the_application_role_may_not_update_or_delete_history(
    as_app_role: Session, table: str, statement: str
) -> None:
    column = "seq" if table == "audit_chain" else "id"
    with (
        pytest.raises(ProgrammingError, match=f"permission denied for table {table}"),
        as_app_role.begin_nested(),
    ):
        as_app_role.execute(text(statement.format(table=table, column=column)))


@pytest.mark.parametrize("table", APPEND_ONLY)
def test_the_application_role_may_not_truncate_history_nor_drop_its_triggers(
    as_app_role: Session, table: str
) -> None:
    with (
        pytest.raises(ProgrammingError, match=f"permission denied for table {table}"),
        as_app_role.begin_nested(),
    ):
        as_app_role.execute(text(f"TRUNCATE {table} CASCADE"))
    with (
        pytest.raises(ProgrammingError, match=f"must be owner of (table|relation) {table}"),
        as_app_role.begin_nested(),
    ):
        as_app_role.execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))


@pytest.mark.parametrize("table", APPEND_ONLY)
def test_the_grants_refuse_the_application_role_even_with_the_triggers_out_of_the_way(
    session: Session, rows: dict[str, Row], app_role: str, table: str
) -> None:
    row = rows[table]
    update = text(f"UPDATE {table} SET {row.column} = :value WHERE {row.key} = :key")
    params = {"value": row.new_value, "key": row.key_value}
    with session.begin_nested() as outer:
        # The superuser turns the triggers off for this transaction only…
        session.execute(text("SET LOCAL session_replication_role = replica"))
        with session.begin_nested() as owner:
            assert session.execute(update, params).rowcount == 1  # …so the owner could rewrite the row;
            owner.rollback()
        session.execute(text(f'SET LOCAL ROLE "{app_role}"'))
        for statement in (update, text(f"DELETE FROM {table} WHERE {row.key} = :key")):
            with (
                pytest.raises(ProgrammingError, match=f"permission denied for table {table}"),
                session.begin_nested(),
            ):
                session.execute(statement, params)
        outer.rollback()
    assert (
        session.execute(text("SELECT current_setting('session_replication_role')")).scalar_one() == "origin"
    )
    assert session.execute(text("SELECT current_user")).scalar_one() != app_role
    assert _value(session, row) != row.new_value


# --- PostgreSQL: TRUNCATE, on a database of its own (it locks whole tables) ---------------------


@pytest.fixture(scope="module")
def own_database(database_url: str) -> Iterator[str]:
    _postgres_only(database_url)
    url = make_url(database_url)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    own = url.set(database=f"{url.database}_immutable{worker}").render_as_string(hide_password=False)
    _prepare_postgres(own)
    command.upgrade(alembic_config(own), "head")
    yield own
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(own).database}" WITH (FORCE)'))
    admin.dispose()


def test_truncating_history_is_refused_even_to_the_owner(own_database: str) -> None:
    engine = create_engine(own_database)
    try:
        with engine.connect() as conn:
            for table in APPEND_ONLY:
                with (
                    pytest.raises(IntegrityError, match=f"{table} is append-only: TRUNCATE refused"),
                    conn.begin(),
                ):
                    conn.execute(text(f"TRUNCATE {table} CASCADE"))
    finally:
        engine.dispose()
