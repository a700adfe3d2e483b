"""Alembic environment: the models' metadata and the application's database URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import context
from sqlalchemy.engine import Connection

import portal.models  # noqa: F401  (registers every table on Base.metadata)
from portal import crypto
from portal.config import load_config
from portal.db import Base, make_engine

config = context.config
target_metadata = Base.metadata


def _render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    # Our UTC type is a DateTime(timezone=True) on disk; render it as such.
    if type_ == "type" and type(obj).__name__ == "UTCDateTime":
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, crypto.Encrypted):
        return "sa.LargeBinary()"  # sealed bytes on disk
    return False


def run_migrations() -> None:
    if not crypto.installed():
        # Migrations that encrypt existing values need the keys the application will read with.
        crypto.install(crypto.keyring_from_config(load_config()))
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.attributes.get("database_url") or load_config()["DATABASE_URL"]
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        render_item=_render_item,
        compare_type=True,
    )
    with _sqlite_keys_checked_at_the_end(connection), context.begin_transaction():
        context.run_migrations()
        if connection.dialect.name == "sqlite":
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:  # raised inside the transaction: every migration of the run is rolled back
                raise RuntimeError(
                    f"the migrations left rows whose foreign keys point nowhere: {broken[:10]}"
                )


@contextmanager
def _sqlite_keys_checked_at_the_end(connection: Connection) -> Iterator[None]:
    """On SQLite, foreign keys not enforced row by row while the migrations run (the run checks
    them all before it commits). A batch operation alters a table by copying it and dropping the
    original, and dropping a table that other tables' rows refer to fails while they are enforced
    (it deletes its rows first). The pragma is a no-op inside a transaction, so it is set on the
    driver's connection before one begins; a caller's connection already in one (the tests') is
    left as it is."""
    if connection.dialect.name != "sqlite" or connection.in_transaction():
        yield
        return
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


run_migrations()
