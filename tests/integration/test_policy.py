"""Policy is versioned data: the newest version in force applies, old versions stay as they were."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.models import AuditEvent, PolicyVersion
from portal.services import policy as policy_service
from portal.services.audit import SYSTEM
from workflows.errors import DomainError
from workflows.policy import DEFAULT_POLICY

TODAY = dt.date(2026, 11, 25)


def test_without_a_stored_version_the_defaults_apply(session: Session) -> None:
    assert policy_service.current(session, TODAY) == DEFAULT_POLICY


def test_a_published_version_applies_from_its_date_and_is_audited(session: Session) -> None:
    stricter = dataclasses.replace(DEFAULT_POLICY, late_fee_grace_days=3)
    later = dataclasses.replace(DEFAULT_POLICY, late_fee_grace_days=1)
    first = policy_service.publish(session, SYSTEM, stricter, TODAY, note="shorter grace")
    second = policy_service.publish(session, SYSTEM, later, TODAY + dt.timedelta(days=7))
    assert (first.version, second.version) == (1, 2)

    assert policy_service.current(session, TODAY - dt.timedelta(days=1)) == DEFAULT_POLICY
    assert policy_service.current(session, TODAY).late_fee_grace_days == 3
    assert policy_service.current(session, TODAY + dt.timedelta(days=7)).late_fee_grace_days == 1
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "policy.published").order_by(AuditEvent.id)
    ).all()
    assert [e.object_id for e in events] == ["1", "2"]


def test_an_inconsistent_policy_is_refused_and_nothing_is_stored(session: Session) -> None:
    broken = dataclasses.replace(DEFAULT_POLICY, mid_from_dpd=200)
    with pytest.raises(DomainError) as refused:
        policy_service.publish(session, SYSTEM, broken, TODAY)
    assert refused.value.code == "policy_invalid"
    session.rollback()
    assert session.scalars(select(PolicyVersion)).all() == []
