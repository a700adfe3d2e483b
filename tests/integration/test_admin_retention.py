"""The admin's retention page: the policy's period, every run with its report, and a dry run on
demand that counts what a run today would remove and removes nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.models import AuditEvent, Borrower, RetentionRun
from tests import factories
from workflows.access import Role


def _old_recalled_account(session: Session) -> Borrower:
    """A borrower whose only account was recalled eight years ago: due under a 6-year policy."""
    account = factories.account(session, principal=0)
    account.status, account.opened_on = "recalled", dt.date(2015, 1, 15)
    account.recalled_at = dt.datetime(2018, 1, 1, tzinfo=dt.UTC)
    account.updated_at = account.recalled_at
    session.commit()
    return account.borrower


def test_a_dry_run_reports_what_is_due_and_removes_nothing(
    signed_in: Callable[[Role], FlaskClient], session: Session
) -> None:
    borrower = _old_recalled_account(session)
    client = signed_in(Role.ADMIN)
    page = client.get("/admin/retention")
    assert page.status_code == 200
    assert "Dry run as of today" in page.get_data(as_text=True)

    response = client.post("/admin/retention/dry-run", follow_redirects=True)
    assert response.status_code == 200
    run = session.scalars(select(RetentionRun).order_by(RetentionRun.id.desc())).first()
    assert run is not None and run.dry_run and run.counts["borrowers_anonymised"] >= 1
    body = response.get_data(as_text=True)
    assert f"#{run.id}" in body and "Dry run" in body
    session.expire_all()
    kept = session.get(Borrower, borrower.id)
    assert kept is not None and kept.date_of_birth is not None and kept.full_name != "[anonymised]"
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "retention.dry_run").order_by(AuditEvent.id.desc())
    ).first()
    assert event is not None and event.actor_type == "staff"


def test_only_an_admin_sees_retention(signed_in: Callable[[Role], FlaskClient], session: Session) -> None:
    for role in (Role.AGENT, Role.SUPERVISOR, Role.COLLECTOR, Role.FINANCE):
        client = signed_in(role)
        assert client.get("/admin/retention").status_code == 403
        assert client.post("/admin/retention/dry-run").status_code == 403
    assert session.scalar(select(RetentionRun.id)) is None
