"""Staff sign-in: password, then a single-use TOTP code; sessions that really end."""

from __future__ import annotations

import datetime as dt
import re

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.models import AuditEvent, StaffUser
from portal.services import staff as staff_service
from tests import factories
from tests.conftest import sign_in
from workflows.access import Role

WRONG = "E-mail or password is not right."


def _password_step(client: FlaskClient, email: str, password: str = factories.PASSWORD, **kw):  # type: ignore[no-untyped-def]
    return client.post("/staff/login", data={"email": email, "password": password}, **kw)


def _code(user: StaffUser, at: dt.datetime | None = None) -> str:
    assert user.totp_secret
    return pyotp.TOTP(user.totp_secret).at(at or dt.datetime.now(dt.UTC))


def test_staff_sign_in_with_password_and_code_reaches_the_workspace(client: FlaskClient, staff_of) -> None:  # type: ignore[no-untyped-def]
    user = staff_of(Role.AGENT)
    response = _password_step(client, user.email.upper())
    assert response.status_code == 302
    assert response.location.endswith("/staff/login/code")
    assert client.get("/staff/").status_code == 302, "the password alone does not sign in"

    response = client.post("/staff/login/code", data={"code": _code(user)})
    assert response.status_code == 302
    assert response.location.endswith("/staff/")
    page = client.get("/staff/")
    assert page.status_code == 200
    assert user.full_name in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"


def test_unknown_email_and_wrong_password_get_the_same_answer(client: FlaskClient, staff_of) -> None:  # type: ignore[no-untyped-def]
    user = staff_of(Role.AGENT)
    unknown = _password_step(client, "nobody@test.accord.example")
    wrong = _password_step(client, user.email, "not the password at all")
    assert unknown.status_code == wrong.status_code == 200

    def page(response, email: str) -> str:  # type: ignore[no-untyped-def]
        # The typed e-mail is echoed back into its field; everything else must be identical.
        # So are CSRF tokens, which carry a timestamp.
        text = response.get_data(as_text=True).replace(email, "EMAIL")
        return re.sub(r'name="csrf_token"[^>]*value="[^"]*"', "TOKEN", text)

    assert page(unknown, "nobody@test.accord.example") == page(wrong, user.email)
    assert WRONG in page(wrong, user.email)


def test_a_code_is_accepted_once_only(client: FlaskClient, staff_of, session: Session) -> None:  # type: ignore[no-untyped-def]
    user = staff_of(Role.AGENT)
    code = _code(user)
    _password_step(client, user.email)
    assert client.post("/staff/login/code", data={"code": code}).status_code == 302

    other = client.application.test_client()
    other.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    _password_step(other, user.email)
    replay = other.post("/staff/login/code", data={"code": code})
    assert replay.status_code == 200
    assert "already used" in replay.get_data(as_text=True)


def test_a_wrong_code_is_refused_and_an_older_step_cannot_be_replayed(session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    user = staff_of(Role.AGENT)
    now = dt.datetime.now(dt.UTC)
    assert not staff_service.verify_totp(
        session, user, "000000" if _code(user, now) != "000000" else "111111", now
    )
    assert not staff_service.verify_totp(session, user, "12ab56", now)
    assert staff_service.verify_totp(session, user, _code(user, now), now)
    earlier = now - dt.timedelta(seconds=30)
    assert not staff_service.verify_totp(session, user, _code(user, earlier), now)


def test_first_sign_in_enrols_an_authenticator_from_a_qr_code(client: FlaskClient, session: Session) -> None:
    user = factories.staff(session, role=Role.FINANCE, enrolled=False)
    response = _password_step(client, user.email)
    assert response.location.endswith("/staff/login/enrol")
    page = client.get("/staff/login/enrol").get_data(as_text=True)
    assert "<svg" in page
    session.refresh(user)
    assert user.totp_secret and not user.totp_enrolled
    assert " ".join(user.totp_secret[i : i + 4] for i in range(0, 8, 4)) in page

    response = client.post("/staff/login/enrol", data={"code": _code(user)})
    assert response.status_code == 302
    session.refresh(user)
    assert user.totp_enrolled
    actions = set(session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == str(user.id))))
    assert {"staff.totp_enrolment_started", "staff.totp_enrolled", "staff.signed_in"} <= actions


def test_a_disabled_user_cannot_sign_in(client: FlaskClient, session: Session) -> None:
    user = factories.staff(session, role=Role.AGENT, is_active=False)
    response = _password_step(client, user.email)
    assert response.status_code == 200
    assert WRONG in response.get_data(as_text=True)


def test_code_step_without_the_password_step_goes_back_to_sign_in(client: FlaskClient) -> None:
    response = client.post("/staff/login/code", data={"code": "123456"})
    assert response.status_code == 302
    assert response.location.endswith("/staff/login")


def test_sign_in_never_redirects_to_another_site(client: FlaskClient, staff_of) -> None:  # type: ignore[no-untyped-def]
    user = staff_of(Role.AGENT)
    _password_step(client, user.email, query_string={"next": "//evil.example/phish"})
    response = client.post("/staff/login/code", data={"code": _code(user)})
    assert response.location == "/staff/"


def test_sign_out_everywhere_ends_other_sessions(client: FlaskClient, staff_of, app: Flask) -> None:  # type: ignore[no-untyped-def]
    user = staff_of(Role.COLLECTOR)
    laptop = sign_in(client, user)
    phone = sign_in(app.test_client(), user)
    assert phone.get("/staff/").status_code == 200
    assert laptop.post("/staff/sign-out-everywhere").status_code == 302
    assert phone.get("/staff/").status_code == 302
    assert laptop.get("/staff/").status_code == 302


def test_an_idle_session_ends(client: FlaskClient, staff_of) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, staff_of(Role.AGENT))
    with client.session_transaction() as sess:
        sess["seen_at"] -= 31 * 60
    response = client.get("/staff/")
    assert response.status_code == 302
    assert response.location.endswith("/staff/login")


def test_sign_in_is_rate_limited_with_a_friendly_page(database_url: str, make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(
        DATABASE_URL=database_url,
        WTF_CSRF_ENABLED=False,
        SIGNIN_RATE_LIMIT="3 per minute",
        RATELIMIT_STORAGE_URI="memory://",
    )
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    statuses = [
        _password_step(client, "someone@test.accord.example", "wrong password").status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    last = _password_step(client, "someone@test.accord.example", "wrong password")
    assert "Too many attempts" in last.get_data(as_text=True)


@pytest.mark.parametrize("email", ["", "x" * 300, "a@b"])
def test_malformed_sign_in_input_gets_a_message_not_an_error(client: FlaskClient, email: str) -> None:
    response = _password_step(client, email, "")
    assert response.status_code == 200
    assert "Enter your e-mail and password." in response.get_data(as_text=True) or WRONG in response.get_data(
        as_text=True
    )
