"""Admins create staff, reset authenticators, disable users; each change audited."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.models import AuditEvent, StaffUser
from tests import factories
from tests.conftest import sign_in
from workflows.access import Role

NEW = {
    "email": "New.Agent@Test.Accord.Example",
    "full_name": "新 协商员",
    "role": "agent",
    "password": "a long enough password",
}


def _count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(StaffUser)) or 0


def test_admin_creates_a_staff_user_who_must_enrol(signed_in, session: Session) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    response = client.post("/admin/staff", data=NEW)
    assert response.status_code == 302
    user = session.scalars(select(StaffUser).where(StaffUser.email == "new.agent@test.accord.example")).one()
    assert user.role == "agent"
    assert not user.totp_enrolled
    assert user.password_hash.startswith("$argon2id$")
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "staff.created")).one()
    assert event.after["email"] == user.email
    assert event.actor_type == "staff"


def test_bad_staff_input_gets_a_message_and_creates_nothing(signed_in, session: Session) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    existing = factories.staff(session, role=Role.AGENT)
    before = _count(session)
    cases = [
        ({**NEW, "email": existing.email.upper()}, "already exists"),
        ({**NEW, "email": "not-an-email"}, "valid e-mail"),
        ({**NEW, "password": "short"}, "at least 12"),  # the form's own length check
        ({**NEW, "role": "superuser"}, "Not a valid choice"),
        ({**NEW, "full_name": "x" * 201}, "200"),
    ]
    for data, message in cases:
        response = client.post("/admin/staff", data=data)
        assert response.status_code == 200, data
        text = response.get_data(as_text=True)
        assert message in text or message.lower() in text.lower(), (data, message)
    assert _count(session) == before


def test_resetting_an_authenticator_forces_enrolment_and_ends_sessions(
    signed_in, session: Session, app
) -> None:  # type: ignore[no-untyped-def]
    target = factories.staff(session, role=Role.AGENT)
    their_client = sign_in(app.test_client(), target)
    client = signed_in(Role.ADMIN)
    assert client.post(f"/admin/staff/{target.id}/reset-totp").status_code == 302
    session.refresh(target)
    assert target.totp_secret is None and not target.totp_enrolled
    assert their_client.get("/staff/").status_code == 302
    assert session.scalars(select(AuditEvent).where(AuditEvent.action == "staff.totp_reset")).one()


def test_disabling_a_user_ends_their_sessions_at_once(signed_in, session: Session, app) -> None:  # type: ignore[no-untyped-def]
    target = factories.staff(session, role=Role.COLLECTOR)
    their_client = sign_in(app.test_client(), target)
    assert their_client.get("/staff/").status_code == 200
    admin_client = signed_in(Role.ADMIN)
    assert admin_client.post(f"/admin/staff/{target.id}/disable").status_code == 302
    assert their_client.get("/staff/").status_code == 302
    session.refresh(target)
    assert not target.is_active
    assert admin_client.post(f"/admin/staff/{target.id}/enable").status_code == 302
    session.refresh(target)
    assert target.is_active
    actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == str(target.id))))
    assert actions.count("staff.disabled") == 1 and actions.count("staff.enabled") == 1


def test_an_admin_cannot_disable_themselves(client, session: Session) -> None:  # type: ignore[no-untyped-def]
    admin = factories.staff(session, role=Role.ADMIN)
    sign_in(client, admin)
    response = client.post(f"/admin/staff/{admin.id}/disable", follow_redirects=True)
    assert "cannot disable your own account" in response.get_data(as_text=True)
    session.refresh(admin)
    assert admin.is_active


def test_actions_on_unknown_staff_are_404(signed_in) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    assert client.post("/admin/staff/999999/disable").status_code == 404
    assert client.post("/admin/staff/999999/reset-totp").status_code == 404
