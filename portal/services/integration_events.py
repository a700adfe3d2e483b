"""Events for lenders: written with the change they describe, numbered in commit order, read by
cursor through the API and pushed to outgoing webhooks.

A service calls ``emit`` inside its own transaction, so an event exists exactly when its change
does. Ids come from a sequence and transactions commit in any order, so a reader paging by id
could pass over an event that commits late. ``sequence`` therefore numbers committed events
afterwards, one sequencer at a time (it locks the one ``event_sequence`` row): every event
numbered later has a larger ``seq`` than every event a reader could already have seen.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from portal.models import Account, EventSequence, IntegrationEvent
from portal.models.integration import EVENT_TYPES

SEQUENCE_BATCH = 10_000


def emit(session: Session, account: Account, event_type: str, data: dict[str, Any]) -> IntegrationEvent:
    """Record that ``event_type`` happened to ``account``; never commits (the caller's change does)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown integration event type {event_type!r}")
    event = IntegrationEvent(
        creditor_id=account.creditor_id,
        account_id=account.id,
        type=event_type,
        data={"account_reference": account.external_reference, "currency": account.currency, **data},
    )
    session.add(event)
    return event


def sequence(session: Session) -> int:
    """Number the committed events that have no ``seq`` yet, oldest id first; commits.

    Call it at the start of a transaction of its own (it commits, or rolls back when there is
    nothing to number). Returns how many events it numbered."""
    counter = session.execute(
        select(EventSequence).where(EventSequence.id == 1).with_for_update()
    ).scalar_one()
    # Read after taking the lock: on PostgreSQL each statement sees what committed before it, so
    # this sees every event another sequencer numbered and every event committed until now.
    numbered = 0
    while True:
        ids = session.scalars(
            select(IntegrationEvent.id)
            .where(IntegrationEvent.seq.is_(None))
            .order_by(IntegrationEvent.id)
            .limit(SEQUENCE_BATCH)
        ).all()
        if not ids:
            break
        first = counter.last_seq + 1
        session.execute(
            update(IntegrationEvent),
            [{"id": event_id, "seq": first + offset} for offset, event_id in enumerate(ids)],
        )
        counter.last_seq += len(ids)
        numbered += len(ids)
    if numbered:
        session.commit()
    else:
        session.rollback()
    return numbered


def since(
    session: Session,
    creditor_id: int,
    after: int,
    limit: int,
    types: tuple[str, ...] | None = None,
) -> list[IntegrationEvent]:
    """A creditor's numbered events after ``seq`` ``after``, oldest first, at most ``limit``."""
    stmt = select(IntegrationEvent).where(
        IntegrationEvent.creditor_id == creditor_id,
        IntegrationEvent.seq.is_not(None),
        IntegrationEvent.seq > after,
    )
    if types:
        stmt = stmt.where(IntegrationEvent.type.in_(types))
    return list(session.scalars(stmt.order_by(IntegrationEvent.seq).limit(limit)))


def event_json(event: IntegrationEvent) -> dict[str, Any]:
    """The public shape of an event, the same in the API and in webhook bodies."""
    data = dict(event.data)
    occurred = event.occurred_at
    if occurred.tzinfo is None:  # SQLite hands back naive datetimes; they are UTC
        occurred = occurred.replace(tzinfo=dt.UTC)
    return {
        "id": f"evt_{event.seq}",
        "seq": event.seq,
        "type": event.type,
        "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
        "account_reference": data.pop("account_reference", None),
        "data": data,
    }
