"""Key rotation for what is sealed at rest: the encrypted columns and the stored files.

After a new key is put first in ``ACCORD_ENCRYPTION_KEYS`` (the old ones after it), new values are
sealed with it at once; ``rotate`` seals everything older again with it, in batches, each batch its
own transaction, so it can be stopped and run again. ``status`` counts what each key holds, so the
operator knows when an old key holds nothing any more and can be dropped from the setting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import LargeBinary, bindparam, select, type_coerce, update
from sqlalchemy.orm import Session

from portal import crypto
from portal.db import Base
from portal.integrations.storage import Storage
from portal.services import audit
from portal.services.audit import Actor

CLEAR = "(clear)"
"""In ``status``: files stored before encryption was switched on."""


def _where(column: Any) -> str:
    return f"{column.table.name}.{column.name}"


@dataclass
class Status:
    columns: dict[str, Counter[str]] = field(default_factory=dict)
    """By ``table.column``: how many values each key id seals."""
    files: dict[str, Counter[str]] = field(default_factory=dict)
    """By store ("evidence", "documents"): how many files each key id seals (or ``CLEAR``)."""


@dataclass
class Rotation:
    columns: dict[str, int] = field(default_factory=dict)
    """By ``table.column``: values sealed again with the current key."""
    files: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    """Values changed by someone else between reading and rewriting (sealed with the current key by
    that change already)."""


def _sealed_values(session: Session, column: Any, batch: int) -> Iterable[list[tuple[int, bytes]]]:
    """The column's sealed bytes, unopened, by id, a batch at a time."""
    table = column.table
    raw = type_coerce(column, LargeBinary)
    last = 0
    while True:
        rows = session.execute(
            select(table.c.id, raw)
            .where(column.is_not(None), table.c.id > last)
            .order_by(table.c.id)
            .limit(batch)
        ).all()
        if not rows:
            return
        last = rows[-1][0]
        yield [(row_id, bytes(value)) for row_id, value in rows]


def status(session: Session, stores: Mapping[str, Storage], *, batch: int = 2000) -> Status:
    ring = crypto.keyring()
    result = Status()
    for column in crypto.encrypted_columns(Base.metadata):
        counts: Counter[str] = Counter()
        for rows in _sealed_values(session, column, batch):
            counts.update(ring.key_id_of(blob) for _row_id, blob in rows)
        result.columns[_where(column)] = counts
    for name, store in stores.items():
        files: Counter[str] = Counter()
        for key in store.stored_keys():
            files[ring.file_key_id(store.raw(key)) or CLEAR] += 1
        result.files[name] = files
    return result


def rotate(session: Session, stores: Mapping[str, Storage], *, actor: Actor, batch: int = 500) -> Rotation:
    """Seal every value and file not sealed with the current key again with it."""
    ring = crypto.keyring()
    result = Rotation()
    for column in crypto.encrypted_columns(Base.metadata):
        table, aad = column.table, _where(column).encode()
        # Rewritten only where the value is still the one read: a change made meanwhile (sealed
        # with the current key already) is never overwritten with the older value.
        statement = (
            update(table)
            .where(table.c.id == bindparam("_id"), type_coerce(column, LargeBinary) == bindparam("_old"))
            .values({column.name: type_coerce(bindparam("_new"), LargeBinary)})
        )
        done = 0
        for rows in _sealed_values(session, column, batch):
            stale = [
                {"_id": row_id, "_old": blob, "_new": ring.seal(ring.open(blob, aad), aad)}
                for row_id, blob in rows
                if ring.key_id_of(blob) != ring.current
            ]
            if stale:
                changed = session.connection().execute(statement, stale).rowcount
                done += changed
                result.skipped += len(stale) - changed
            session.commit()
        result.columns[_where(column)] = done
    for name, store in stores.items():
        result.files[name] = sum(1 for key in list(store.stored_keys()) if store.rewrite(key))
    audit.record(
        session,
        actor,
        "encryption.rotated",
        "encryption_key",
        ring.current,
        after={"columns": result.columns, "files": result.files, "skipped": result.skipped},
    )
    session.commit()
    return result
