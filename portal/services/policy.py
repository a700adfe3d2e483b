"""The policy in force: the newest version whose effective date has come."""

from __future__ import annotations

import datetime as dt
import threading
import time

from flask import current_app, has_app_context
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.models import PolicyVersion
from portal.services import audit
from portal.services.audit import Actor
from workflows.policy import DEFAULT_POLICY, Policy


def current(session: Session, today: dt.date) -> Policy:
    return current_version(session, today)[1]


_CACHE: dict[tuple[str, dt.date], tuple[float, tuple[int | None, Policy]]] = {}
_CACHE_LOCK = threading.Lock()


def current_version(session: Session, today: dt.date) -> tuple[int | None, Policy]:
    """The policy in force and its version number (None: the built-in defaults, never published).

    Every page needs it, so each worker keeps it for POLICY_CACHE_SECONDS (60 s by default):
    a published version reaches other workers within that time; this worker forgets at once."""
    ttl = float(current_app.config.get("POLICY_CACHE_SECONDS", 0)) if has_app_context() else 0.0
    if ttl <= 0:
        return _load(session, today)
    key = (str(session.get_bind().url), today)
    now = time.monotonic()
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    value = _load(session, today)
    with _CACHE_LOCK:
        if len(_CACHE) > 100:
            _CACHE.clear()
        _CACHE[key] = (now + ttl, value)
    return value


def _load(session: Session, today: dt.date) -> tuple[int | None, Policy]:
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
    with _CACHE_LOCK:
        _CACHE.clear()
    return row
