"""The audit trail's hash chain: committed audit events are linked in the order they committed,
each link carrying the previous link's hash (the rule is in workflows/audit_chain).

Linking happens after commit, not in ``audit.record``: events are recorded inside the hottest
transactions (payments, webhooks, the collections run), and chaining there would make every
one of them wait for the one chain head. ``link`` instead runs on its own (a task every 5
minutes, ``flask audit link``): it locks the head row, so linkers take turns, and chains the
committed events waiting in ``audit_chain_pending`` (a database trigger puts every inserted
audit event there, bulk inserts included), lowest id first. Ids are handed out before commit,
so an event can commit after one with a higher id: a run links only what has committed, and the
late event is linked by a later run, after every event linked before it (the reason integration
events are numbered after commit too, see services/integration_events).

What the chain proves: ``verify`` recomputes every link, so a chained event altered, removed or
moved, or a link removed, is found, with the first link that breaks. It cannot tell a chain
rewritten whole from the altered event on by someone who can write every table; the head
(``head``, logged every night) kept outside the database, and given back to ``verify`` as an
anchor, is what catches that. An event altered or removed between its commit and its link is
not covered by the chain; the append-only triggers and the application role's grants (see the
migration 3bda8404f459) are what protect it then, and ``verify`` reports events left unchained
longer than ``UNCHAINED_GRACE`` (the linking task is not running).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, delete, exists, func, insert, select
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import AuditChain, AuditChainHead, AuditChainPending, AuditEvent
from workflows import audit_chain as chain
from workflows.audit_chain import Break, ChainedEvent, StoredLink

LINK_BATCH = 1_000
VERIFY_BATCH = 2_000
UNCHAINED_GRACE = dt.timedelta(hours=1)

_EVENT_COLUMNS = (
    AuditEvent.id,
    AuditEvent.occurred_at,
    AuditEvent.actor_type,
    AuditEvent.actor_id,
    AuditEvent.action,
    AuditEvent.object_type,
    AuditEvent.object_id,
    AuditEvent.before,
    AuditEvent.after,
    AuditEvent.request_id,
    AuditEvent.ip,
)


def _event(row: Row[Any]) -> ChainedEvent:
    return ChainedEvent(
        id=row.id,
        occurred_at=row.occurred_at,
        actor_type=row.actor_type,
        actor_id=row.actor_id,
        action=row.action,
        object_type=row.object_type,
        object_id=row.object_id,
        before=row.before,
        after=row.after,
        request_id=row.request_id,
        ip=row.ip,
    )


def link(session: Session) -> int:
    """Chain the committed audit events waiting in ``audit_chain_pending``, lowest id first, in
    batches of ``LINK_BATCH`` (each its own transaction); returns how many it chained.

    Call it on a session with no transaction begun: it commits each batch (and rolls back when
    there is nothing to chain)."""
    linked = 0
    while True:
        head = session.execute(
            select(AuditChainHead)
            .where(AuditChainHead.id == 1)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()
        # Read after taking the lock: on PostgreSQL each statement sees what committed before it,
        # so this sees every link another linker made and every event committed until now.
        rows = session.execute(
            select(*_EVENT_COLUMNS)
            .join(AuditChainPending, AuditChainPending.event_id == AuditEvent.id)
            .order_by(AuditEvent.id)
            .limit(LINK_BATCH)
        ).all()
        if not rows:
            session.rollback()
            return linked
        links = list(chain.extend(head.seq, head.hash, (_event(row) for row in rows)))
        now = utcnow()
        session.execute(
            insert(AuditChain),
            [
                {
                    "seq": new.seq,
                    "event_id": new.event_id,
                    "prev_hash": new.prev_hash,
                    "hash": new.hash,
                    "chained_at": now,
                }
                for new in links
            ],
        )
        session.execute(
            delete(AuditChainPending).where(AuditChainPending.event_id.in_([new.event_id for new in links]))
        )
        head.seq, head.hash = links[-1].seq, links[-1].hash
        session.commit()
        linked += len(links)


@dataclass(frozen=True)
class ChainReport:
    """What ``verify`` found: ``links`` recomputed and sound, ending at ``head`` (seq, hash);
    ``broken``, the first link that is not; ``unchained``, events committed more than
    ``UNCHAINED_GRACE`` ago and still not linked (the oldest id in ``oldest_unchained``)."""

    links: int
    head: tuple[int, str]
    broken: Break | None
    unchained: int
    oldest_unchained: int | None

    @property
    def ok(self) -> bool:
        return self.broken is None and not self.unchained


def head(session: Session) -> tuple[int, str]:
    """The chain's newest link as (seq, hash): what an operator keeps outside the database."""
    row = session.execute(select(AuditChainHead.seq, AuditChainHead.hash).where(AuditChainHead.id == 1)).one()
    return row.seq, row.hash


def _stored_link(row: Row[Any]) -> StoredLink:
    return StoredLink(row.seq, row.prev_hash, row.hash, _event(row) if row.id is not None else None)


def verify(
    session: Session, *, anchors: Mapping[int, str] | None = None, now: dt.datetime | None = None
) -> ChainReport:
    """Recompute the whole chain, reading it in batches (memory stays flat), against the head
    row and the ``anchors`` (seq → hash kept elsewhere); count the events overdue for linking
    (all of them, not only those waiting in ``audit_chain_pending``: one taken off it is found).

    It takes a share lock on the head, held until the caller's transaction ends, so no link
    lands while it reads (on PostgreSQL linkers wait; SQLite's transactions run one at a time
    anyway). Never commits."""
    recorded = session.execute(
        select(AuditChainHead.seq, AuditChainHead.hash)
        .where(AuditChainHead.id == 1)
        .with_for_update(read=True)
    ).one()
    rows = session.execute(
        select(AuditChain.seq, AuditChain.prev_hash, AuditChain.hash, *_EVENT_COLUMNS)
        .outerjoin(AuditEvent, AuditEvent.id == AuditChain.event_id)
        .order_by(AuditChain.seq)
        .execution_options(yield_per=VERIFY_BATCH)
    )
    # Closed here even when the check stops at a break before the last row (PostgreSQL streams
    # the rows through a server-side cursor).
    with closing(rows):
        checked = chain.verify(map(_stored_link, rows), head=(recorded.seq, recorded.hash), anchors=anchors)
    cutoff = (now or utcnow()) - UNCHAINED_GRACE
    overdue = session.execute(
        select(func.count(), func.min(AuditEvent.id)).where(
            AuditEvent.occurred_at < cutoff, ~exists().where(AuditChain.event_id == AuditEvent.id)
        )
    ).one()
    return ChainReport(
        links=checked.checked,
        head=checked.head,
        broken=checked.broken,
        unchained=int(overdue[0]),
        oldest_unchained=overdue[1],
    )
