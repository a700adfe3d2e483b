"""Audit events, written in the same transaction as the change they describe."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import g, has_request_context, request
from sqlalchemy.orm import Session

from portal.models import AuditEvent
from workflows.personal_data import redact


@dataclass(frozen=True)
class Actor:
    """Who did it: a staff user, a borrower, or the system (a job, a command)."""

    type: str
    id: int | None = None

    @classmethod
    def staff(cls, user: Any) -> Actor:
        return cls("staff", user.id)


SYSTEM = Actor("system")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(_jsonable(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value


def snapshot(obj: Any, fields: Iterable[str]) -> dict[str, Any]:
    """The named attributes of ``obj`` as JSON-ready values, for ``before``/``after``."""
    return {name: _jsonable(getattr(obj, name)) for name in fields}


@contextmanager
def change(session: Session, actor: Actor, action: str, obj: Any, fields: Iterable[str]) -> Iterator[None]:
    """Audit the change made inside the block to ``obj``'s ``fields`` (one event, before and after)."""
    fields = tuple(fields)
    before = snapshot(obj, fields)
    yield
    record(session, actor, action, obj.__tablename__, obj.id, before=before, after=snapshot(obj, fields))


def record(
    session: Session,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: object,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    # Sensitive fields of the object's table are recorded as set or empty, never by value: the
    # trail is append-only, so what enters it could never be anonymised (workflows.personal_data).
    if before is not None:
        before = redact(object_type, before)
    if after is not None:
        after = redact(object_type, after)
    event = AuditEvent(
        actor_type=actor.type,
        actor_id=actor.id,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        before=_jsonable(before) if before is not None else None,
        after=_jsonable(after) if after is not None else None,
        request_id=g.get("request_id") if has_request_context() else None,
        ip=request.remote_addr if has_request_context() else None,
    )
    session.add(event)
    return event
