"""The policy in force: the newest version whose effective date has come."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.models import PolicyVersion
from portal.services import audit
from portal.services.audit import Actor
from workflows.policy import DEFAULT_POLICY, Policy


def current(session: Session, today: dt.date) -> Policy:
    return current_version(session, today)[1]


def current_version(session: Session, today: dt.date) -> tuple[int | None, Policy]:
    """The policy in force and its version number (None: the built-in defaults, never published)."""
    row = session.scalar(
        select(PolicyVersion)
        .where(PolicyVersion.effective_from <= today)
        .order_by(PolicyVersion.version.desc())
        .limit(1)
    )
    return (None, DEFAULT_POLICY) if row is None else (row.version, Policy.from_dict(row.data))


def publish(
    session: Session, actor: Actor, policy: Policy, effective_from: dt.date, note: str | None = None
) -> PolicyVersion:
    """Store ``policy`` as the next version (validated by ``Policy.from_dict``)."""
    data = Policy.from_dict(policy.to_dict()).to_dict()
    latest = session.scalar(select(func.max(PolicyVersion.version))) or 0
    row = PolicyVersion(version=latest + 1, effective_from=effective_from, data=data, note=note)
    session.add(row)
    session.flush()
    audit.record(session, actor, "policy.published", "policy_version", row.version, after=data)
    session.commit()
    return row
