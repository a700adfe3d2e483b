"""Pooled connections: one the server closed is replaced before use (no ping per request), and a
read-only request cannot write and keeps its prepared statements."""

from __future__ import annotations

import socket
import sqlite3
import time

import pytest
from flask import Flask
from psycopg.pq import TransactionStatus
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import DBAPIError

from portal.db import _has_input
from portal.extensions import db
from portal.models import Borrower, Creditor
from tests import factories
from tests.conftest import sign_in


def test_an_idle_socket_has_no_input_until_the_peer_writes_or_closes() -> None:
    ours, theirs = socket.socketpair()
    try:
        assert not _has_input(ours.fileno())
        theirs.sendall(b"E")  # what PostgreSQL sends before it closes: its FATAL message
        assert _has_input(ours.fileno())
        ours.recv(1)
        assert not _has_input(ours.fileno())
        theirs.close()
        assert _has_input(ours.fileno())
    finally:
        ours.close()


def _postgres_app(make_app, database_url: str) -> Flask:  # type: ignore[no-untyped-def]
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (ACCORD_TEST_DATABASE_URL)")
    return make_app(DATABASE_URL=database_url)  # type: ignore[no-any-return]


def _backend_pid(app: Flask) -> int:
    with app.app_context():
        return int(db.session.scalar(text("SELECT pg_backend_pid()")))


def test_a_connection_the_server_closed_is_replaced_before_a_request_uses_it(
    make_app, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    app = _postgres_app(make_app, database_url)
    first = _backend_pid(app)  # back in the pool, idle
    admin = create_engine(database_url)
    try:
        with admin.connect() as conn:
            assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with admin.connect() as conn:
                if not conn.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": first}
                ):
                    break
            time.sleep(0.05)
    finally:
        admin.dispose()
    # Without a check at checkout this would fail with "terminating connection due to administrator command".
    assert _backend_pid(app) != first


def test_a_read_only_request_cannot_write_and_leaves_the_connection_writable(
    make_app, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    app = _postgres_app(make_app, database_url)
    with app.test_request_context("/"):
        assert db.read_only()
        assert db.session.scalar(text("SHOW transaction_read_only")) == "on"
        # autocommit: no transaction is left open after a statement (no BEGIN, no COMMIT)
        assert (
            db.session.connection().connection.dbapi_connection.info.transaction_status
            == TransactionStatus.IDLE
        )
        assert not db.read_only()  # its session exists already: nothing changes
        with pytest.raises(DBAPIError, match="read-only transaction"):
            db.session.execute(text("CREATE TEMP TABLE scratch (x int)"))
    with app.test_request_context("/"):
        assert db.session.scalar(text("SHOW transaction_read_only")) == "off"
        assert (
            db.session.connection().connection.dbapi_connection.info.transaction_status
            == TransactionStatus.INTRANS
        )


def test_a_read_only_request_cannot_write_even_after_a_commit(make_app, database_url: str) -> None:  # type: ignore[no-untyped-def]
    app = _postgres_app(make_app, database_url)
    code = f"RO{time.monotonic_ns()}"
    with app.test_request_context("/"):
        assert db.read_only()
        db.session.scalar(text("SELECT 1"))
        db.session.commit()
        db.session.add(Creditor(code=code, name="Never kept"))
        with pytest.raises(DBAPIError, match="read-only transaction"):
            db.session.flush()
    with app.test_request_context("/"):
        assert db.session.scalar(select(Creditor).where(Creditor.code == code)) is None


def test_read_only_requests_keep_their_prepared_statements(make_app, database_url: str) -> None:  # type: ignore[no-untyped-def]
    """psycopg prepares a statement at its fifth run on a connection and forgets them all at a
    ROLLBACK; read-only requests send none, so the statement stays prepared across requests."""
    app = _postgres_app(make_app, database_url)
    marker = f"accord_prepared_{time.monotonic_ns()}"
    for _ in range(6):
        with app.test_request_context("/"):
            assert db.read_only()
            db.session.execute(text(f"SELECT 1 AS {marker}"))
    with app.test_request_context("/"):
        assert db.read_only()
        prepared = db.session.scalars(text("SELECT statement FROM pg_prepared_statements")).all()
    assert any(marker in statement for statement in prepared)


def test_the_dashboard_runs_read_only(make_app, database_url: str) -> None:  # type: ignore[no-untyped-def]
    app = _postgres_app(make_app, database_url)
    with app.app_context():
        borrower = factories.borrower(db.session, language="en")
        db.session.commit()
    try:
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
        page = sign_in(client, borrower).get("/home")
        assert page.status_code == 200
        assert "You have no open accounts with us." in page.get_data(as_text=True)
    finally:
        with app.app_context():
            db.session.delete(db.session.get(Borrower, borrower.id))
            db.session.commit()


def test_on_sqlite_a_read_only_request_reads_while_another_holds_the_write_lock(make_app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every other transaction on SQLite begins by taking the write lock (BEGIN IMMEDIATE), and
    would wait here until the writer ends (a placement import: the whole file)."""
    path = tmp_path / "ro.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x INTEGER)")
    writer.execute("INSERT INTO t VALUES (1)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (2)")  # the write lock held, the row not committed
    try:
        app = make_app(DATABASE_URL=f"sqlite:///{path}")
        with app.test_request_context("/"):
            assert db.read_only()
            assert db.session.scalars(text("SELECT x FROM t")).all() == [1]
            db.session.commit()
        with app.test_request_context("/"):  # an ordinary request is not read-only
            assert db.session.get_bind().get_execution_options().get("read_only") is None
    finally:
        writer.execute("ROLLBACK")
        writer.close()
