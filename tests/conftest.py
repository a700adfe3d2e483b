"""Fixtures: a migrated database (SQLite, or PostgreSQL from ACCORD_TEST_DATABASE_URL), the app,
a transaction per test that is rolled back, a client, and signed-in staff of each role."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from portal import create_app, tasks
from portal.db import make_engine
from portal.extensions import db
from portal.migrations import alembic_config
from portal.models import Borrower, StaffUser
from portal.tasks import huey
from tests import factories
from tests.stripe_support import LocalStripe, start_localstripe, stripe_config
from workflows.access import Role


def _prepare_postgres(url: str) -> None:
    """Create the test database if needed and empty it, so migrations start from nothing."""
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database})
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()
    engine = create_engine(target, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@contextmanager
def own_postgres_engine(database_url: str, suffix: str) -> Iterator[Engine]:
    """A migrated PostgreSQL database of a test module's own (``<test database>_<suffix><worker>``),
    where transactions really commit and connections really wait for each other's locks; dropped
    after. For a module-scoped fixture, which skips on SQLite before calling this."""
    url = make_url(database_url)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    own = url.set(database=f"{url.database}_{suffix}{worker}").render_as_string(hide_password=False)
    _prepare_postgres(own)
    command.upgrade(alembic_config(own), "head")
    engine = make_engine(own)
    try:
        yield engine
    finally:
        engine.dispose()
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(own).database}" WITH (FORCE)'))
        admin.dispose()


# Background jobs run inline, in the test's transaction (Huey's immediate mode).
huey.immediate = True


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("ACCORD_TEST_DATABASE_URL")
    if url:
        # Under pytest-xdist each worker empties and migrates a database of its own
        # (accord_test_gw0, accord_test_gw1, …); they share the server and its roles.
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if worker:
            target = make_url(url)
            url = target.set(database=f"{target.database}_{worker}").render_as_string(hide_password=False)
        _prepare_postgres(url)
        # The migrations create the application's role, allowed to read and add history but not
        # to rewrite it (tests/integration/test_history_immutable.py connects as it).
        os.environ.setdefault("ACCORD_DB_APP_ROLE", "accord_test_app")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'accord-test.db'}"
    command.upgrade(alembic_config(url), "head")
    return url


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """``make_app(DATABASE_URL=…, …)``: an extra app for one test, its connections closed after."""
    made: list[Flask] = []

    def make(**config: object) -> Flask:
        settings = {"ACCORD_ENV": "test", "SECRET_KEY": "extra-app", "INSTANCE_PATH": str(tmp_path)}
        made.append(create_app({**settings, **config}))
        return made[-1]

    yield make
    for extra in made:
        db.bound(extra).dispose()


@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripe]:
    """One localstripe per test process (its own port, so xdist workers never share one)."""
    server = start_localstripe()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def app(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, localstripe: LocalStripe
) -> Iterator[Flask]:
    application = create_app(
        {
            **stripe_config(localstripe),
            "ACCORD_ENV": "test",
            "DATABASE_URL": database_url,
            "SECRET_KEY": "test-secret-key",
            "INSTANCE_PATH": str(tmp_path_factory.mktemp("instance")),
            "WTF_CSRF_ENABLED": False,
            "DESK_COUNTS_SECONDS": 0,  # tests read exact counts
            "POLICY_CACHE_SECONDS": 0,  # tests publish policies in rolled-back transactions
            "SIGNIN_RATE_LIMIT": "1000 per minute",
            "BORROWER_SIGNIN_RATE_LIMIT": "1000 per minute",
            "BORROWER_CODE_RATE_LIMIT": "1000 per minute",
            "TESTING": True,
        }
    )
    # Jobs Huey runs inline from a service called straight from a test (no request, so no app
    # context) run in this app, not in one built from the environment.
    tasks.INLINE_APP = application
    yield application
    tasks.INLINE_APP = None
    db.bound(application).engine.dispose()


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    """Everything a test does, requests included, happens in one transaction rolled back at the end."""
    bound = db.bound(app)
    original = bound.session_factory
    connection = bound.engine.connect()
    transaction = connection.begin()
    bound.session_factory = sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )
    test_session = bound.session_factory()
    try:
        yield test_session
    finally:
        test_session.close()
        transaction.rollback()
        connection.close()
        bound.session_factory = original


@pytest.fixture
def client(app: Flask, session: Session) -> FlaskClient:
    """A browser that prefers English (the default locale is Chinese; test_i18n covers it)."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def sign_in(client: FlaskClient, user: StaffUser | Borrower) -> FlaskClient:
    """Put a signed-in staff session in the client's cookie (the real flow is tested in test_staff_auth)."""
    with client.session_transaction() as sess:
        sess["_user_id"] = user.get_id()
        sess["_fresh"] = True
        sess["auth_at"] = sess["seen_at"] = int(time.time())
    return client


@pytest.fixture
def staff_of(session: Session):  # type: ignore[no-untyped-def]
    """``staff_of(Role.AGENT)`` → an enrolled, active staff user of that role."""

    def make(role: Role) -> StaffUser:
        return factories.staff(session, role=role)

    return make


@pytest.fixture
def signed_in(client: FlaskClient, staff_of):  # type: ignore[no-untyped-def]
    """``signed_in(Role.AGENT)`` → the client, signed in as a new user of that role."""

    def make(role: Role) -> FlaskClient:
        return sign_in(client, staff_of(role))

    return make


@pytest.fixture(scope="session")
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
