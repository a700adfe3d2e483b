"""Engine, sessions and the declarative base.

One ``Session`` per request (kept on ``flask.g``) or per task/command (``db.session_scope()``).
Views never commit; services do.
"""

from __future__ import annotations

import datetime as dt
import select
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, current_app, g, has_app_context
from sqlalchemy import ColumnElement, DateTime, Engine, MetaData, any_, bindparam, create_engine, event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# The largest id a row can have: most tables' ids are PostgreSQL ``integer`` (32 bits), those of
# the busiest (BigId: ledger entries, collection actions, webhook deliveries…) ``bigint``. A larger
# number matches no row, and the database cannot even compare it with an id (integer out of range).
MAX_ID = 2**31 - 1
MAX_BIG_ID = 2**63 - 1


def row_id(text: str) -> int:
    """``text`` read as the id of a row with an ``integer`` id, for ``request.form.get(name,
    type=row_id)``: a ValueError (so None) unless it is a whole number from 1 to MAX_ID."""
    value = int(text)
    if not 1 <= value <= MAX_ID:
        raise ValueError(f"not a row id: {text!r}")
    return value


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def among(column: Any, values: Sequence[object], *, dialect: str) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``column = ANY(:array)``: one parameter instead of
    hundreds or thousands (psycopg parses the text of such a statement afresh every time), and
    the plan still uses an index on the column."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC-aware values")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime()}

    def __repr__(self) -> str:
        pk = ", ".join(f"{c.key}={getattr(self, c.key)!r}" for c in self.__mapper__.primary_key)
        return f"<{type(self).__name__} {pk}>"


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    engine = create_engine(url, **kwargs)
    _drop_hung_up_connections(engine)
    return engine


def _drop_hung_up_connections(engine: Engine) -> None:
    """A pooled connection the server has closed (PostgreSQL restarted, the backend was
    terminated, an idle timeout) is replaced before a request uses it.

    ``pool_pre_ping`` would do this with a ``SELECT 1`` round trip on every checkout, i.e. on every
    request. An idle connection in the pool has nothing to read unless the server closed it: it
    then sends its FATAL message and the socket ends, so the socket is readable. Looking costs a
    ``poll`` with no wait; a readable or closed connection is refused (``DisconnectionError``:
    the pool discards it and connects afresh, up to three times). A connection that dies while a
    request uses it fails that request, as it would with the ping, and SQLAlchemy then recycles
    the whole pool."""

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if dbapi_connection.closed or _has_input(dbapi_connection.fileno()):
            raise DisconnectionError("the database server closed this pooled connection")


def _has_input(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))  # POLLHUP and POLLERR are reported whatever is registered


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT and transactional DDL; take over
    # BEGIN ourselves (the recipe from SQLAlchemy's SQLite dialect documentation).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE: a transaction takes the write lock when it starts, so two requests that
        # read a row and then change it queue behind each other (busy_timeout) instead of one
        # failing with "database is locked" when it upgrades a read lock. SQLite has no row
        # locks (SELECT … FOR UPDATE is ignored); this is what makes the version checks and
        # one-decision-per-case hold on the embedded database. The price: transactions on the
        # embedded default run one at a time, which suits the one-host demo; production runs
        # on PostgreSQL, whose row locks let them run side by side. A connection opened with
        # execution_options(read_only=True) (the readiness probe) begins without the lock.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("read_only") else "BEGIN IMMEDIATE")


@dataclass
class _Bound:
    """One app's engine and session factory (each app has its own: tests build several)."""

    engine: Engine
    session_factory: sessionmaker[Session]
    _reader: sessionmaker[Session] | None = None

    def reader(self) -> sessionmaker[Session] | None:
        """Sessions for requests that only read. On PostgreSQL: an engine of their own, made
        on first use, whose connections run in autocommit and which the server holds read-only
        (``default_transaction_read_only``: it refuses any write, loudly). On SQLite: the same
        engine, its transactions begun without the write lock (``BEGIN``, not ``BEGIN
        IMMEDIATE``; see ``_configure_sqlite``), so such a request reads, in WAL mode, while
        another holds the lock — a placement import, say, which holds it until it has placed the
        whole file — instead of queueing behind it.

        Why: such a request needs no transaction of its own. In autocommit there is no
        ``BEGIN`` and no ``COMMIT``, two round trips of the four the dashboard made; and no
        ``ROLLBACK``, at which psycopg forgets a connection's prepared statements, so a statement
        run five times on a connection is prepared and no longer planned. Each statement sees
        its own snapshot, which a page that reads the borrower and then their accounts does not
        mind. None where sessions are bound to a connection (the tests' transaction): those
        requests run as any other."""
        if self._reader is None:
            if not isinstance(self.session_factory.kw.get("bind"), Engine):
                return None
            if self.engine.dialect.name == "sqlite":
                self._reader = sessionmaker(
                    bind=self.engine.execution_options(read_only=True), expire_on_commit=False
                )
                return self._reader
            engine = make_engine(
                self.engine.url.render_as_string(hide_password=False),
                isolation_level="AUTOCOMMIT",
                connect_args={"options": "-c default_transaction_read_only=on"},
            )
            self._reader = sessionmaker(bind=engine, expire_on_commit=False)
        return self._reader

    def dispose(self) -> None:
        """Close the pooled connections of both engines (one, on SQLite)."""
        self.engine.dispose()
        if self._reader is not None and self.engine.dialect.name != "sqlite":
            self._reader.kw["bind"].dispose()


class Database:
    """The Flask extension: ``db.session`` is this request's (or app context's) session."""

    def init_app(self, app: Flask) -> None:
        engine = make_engine(app.config["DATABASE_URL"])
        app.extensions["accord_db"] = _Bound(engine, sessionmaker(bind=engine, expire_on_commit=False))
        app.teardown_appcontext(self._remove_session)

    @staticmethod
    def bound(app: Flask | None = None) -> _Bound:
        bound: _Bound = (app or current_app).extensions["accord_db"]
        return bound

    @property
    def engine(self) -> Engine:
        return self.bound().engine

    @property
    def session_factory(self) -> sessionmaker[Session]:
        return self.bound().session_factory

    @property
    def session(self) -> Session:
        if not has_app_context():
            raise RuntimeError("db.session needs an app context; use db.session_scope()")
        if "db_session" not in g:
            g.db_session = self.session_factory()
        session: Session = g.db_session
        return session

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A session for a task or a command; rolled back unless a service committed."""
        session = self.session_factory()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def read_only(self) -> bool:
        """Declare, before this request touches the database, that it only reads: its session
        is one of ``_Bound.reader``'s (on PostgreSQL autocommit, the server refusing writes; on
        SQLite transactions that do not wait for the write lock).

        Returns False, and changes nothing, where it cannot apply: the request's session exists
        already, or sessions are bound to a connection (the tests' transaction)."""
        if not has_app_context() or "db_session" in g:
            return False
        reader = self.bound().reader()
        if reader is None:
            return False
        g.db_session = reader()
        return True

    def _remove_session(self, exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is None:
            return
        session.rollback()  # in autocommit (a read-only request) nothing is sent
        session.close()


db = Database()

F = TypeVar("F", bound=Callable[..., Any])


def reads_only(view: F) -> F:
    """The view changes nothing: its database transaction is read-only (``db.read_only``). Put
    it above the decorators that load the user through the request's session; a blueprint's
    ``before_request`` that loads it first (the staff guard) reads the ``reads_only`` mark."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        db.read_only()
        return view(*args, **kwargs)

    wrapper.reads_only = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
