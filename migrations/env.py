"""Alembic environment: the models' metadata and the application's database URL."""

from __future__ import annotations

from alembic import context

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


def _run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        render_item=_render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
