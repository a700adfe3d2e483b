"""Borrower sign-in: identify, then a one-time code to the contact on file; nothing leaks."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.models import AuditEvent, Borrower, OutboundMessage, SigninAttempt, SigninCode
from portal.services.borrower_signin import registered_phones
from tests import factories
from tests.conftest import sign_in

DOB = "1985-03-15"


def _identify(client: FlaskClient, identifier: str, born: str = DOB, **kw):  # type: ignore[no-untyped-def]
    return client.post("/signin", data={"identifier": identifier, "date_of_birth": born}, **kw)


def _codes_sent_to(session: Session, recipient: str) -> list[str]:
    bodies = session.scalars(
        select(OutboundMessage.body)
        .where(OutboundMessage.recipient == recipient)
        .order_by(OutboundMessage.id)
    )
    return [m for body in bodies for m in re.findall(r"\b(\d{6})\b", body)]


@pytest.fixture
def account(session: Session):  # type: ignore[no-untyped-def]
    return factories.account(session, principal=500_000, reference="LN-SIGN-1")


def test_a_borrower_signs_in_with_reference_birth_date_and_the_code_sent(
    client: FlaskClient, session: Session, account
) -> None:  # type: ignore[no-untyped-def]
    response = _identify(client, "ln-sign-1")
    assert response.status_code == 302
    assert response.location.endswith("/signin/code")
    [code] = _codes_sent_to(session, account.borrower.phone)

    response = client.post("/signin/code", data={"code": code})
    assert response.location.endswith("/home")
    home = client.get("/home").get_data(as_text=True)
    assert "LN-SIGN-1" in home
    assert session.scalar(select(func.count()).where(AuditEvent.action == "borrower.signed_in")) == 1


def test_the_code_message_names_no_debt_and_comes_in_the_borrowers_language(
    client: FlaskClient, session: Session, account
) -> None:  # type: ignore[no-untyped-def]
    _identify(client, "LN-SIGN-1")
    message = session.scalars(select(OutboundMessage)).one()
    assert message.channel == "sms"
    assert "验证码" in message.body
    for secret in ("LN-SIGN-1", "5,000", "5000", account.creditor.name, "debt", "欠"):
        assert secret not in message.body


def test_the_registered_phone_identifies_too(client: FlaskClient, session: Session, account) -> None:  # type: ignore[no-untyped-def]
    phone = account.borrower.phone
    for typed in (phone, phone.removeprefix("+86"), phone.replace("+", "")):
        other = client.application.test_client()
        _identify(other, typed)
    assert len(_codes_sent_to(session, phone)) == 3


@pytest.mark.parametrize(
    ("phone", "typed"),
    [
        ("+12125550123", "2125550123"),  # a one-digit country code
        ("+85291234567", "85291234567"),  # the whole number without its +
        ("+8801712345678", "1712345678"),  # a three-digit country code
        ("+8801712345678", "(880) 1712-345-678"),
    ],
)
def test_a_national_number_identifies_after_any_country_code(  # type: ignore[no-untyped-def]
    client: FlaskClient, session: Session, phone: str, typed: str
) -> None:
    owner = factories.borrower(session, phone=phone)
    factories.account(session, owner=owner)
    _identify(client, typed)
    assert len(_codes_sent_to(session, phone)) == 1


def test_a_phone_on_file_without_an_account_identifies_nobody(client: FlaskClient, session: Session) -> None:
    factories.borrower(session, phone="+8613900001111")
    _identify(client, "13900001111")
    assert _codes_sent_to(session, "+8613900001111") == []


def test_the_phones_a_typed_number_can_be_are_exactly_its_country_code_readings() -> None:
    assert registered_phones("+8613800001234") == ["+8613800001234"]
    eleven = registered_phones("13800001234")  # 11 digits: room for a code of up to 3 digits
    assert eleven[0] == "+13800001234" and len(eleven) == 1 + 999
    assert {"+113800001234", "+8613800001234", "+99913800001234"} <= set(eleven)
    assert len(registered_phones("1380000123412")) == 1 + 99  # 13 digits: codes of 1 or 2
    assert registered_phones("138000012341234") == ["+138000012341234"]  # 15: no room at all
    assert all(len(phone) <= 16 for phone in eleven)


def test_step_one_answers_the_same_whether_or_not_the_details_match(
    client: FlaskClient, session: Session, account
) -> None:  # type: ignore[no-untyped-def]
    answers = [
        _identify(client.application.test_client(), identifier, born)
        for identifier, born in (("LN-SIGN-1", DOB), ("LN-SIGN-1", "1990-01-01"), ("NOBODY-9", DOB))
    ]
    assert {(r.status_code, r.location, r.get_data()) for r in answers} == {
        (302, "/signin/code", answers[0].get_data())
    }
    pages = {
        re.sub(r'value="[^"]*"', "", c.get("/signin/code").get_data(as_text=True))
        for c in [client.application.test_client() for _ in range(1)]
    }
    assert len(pages) == 1
    # The same work either way: an attempt and a code row each; a message only for the match.
    assert session.scalar(select(func.count()).select_from(SigninAttempt)) == 3
    assert session.scalar(select(func.count()).select_from(SigninCode)) == 3
    assert session.scalar(select(func.count()).select_from(OutboundMessage)) == 1


def test_no_code_ever_works_for_details_that_matched_nobody(
    client: FlaskClient, session: Session, account
) -> None:  # type: ignore[no-untyped-def]
    _identify(client, "LN-SIGN-1", "1990-01-01")
    assert _codes_sent_to(session, account.borrower.phone) == []
    for guess in ("000000", "123456"):
        response = client.post("/signin/code", data={"code": guess})
        assert "That code is not right" in response.get_data(as_text=True)
    assert client.get("/home").status_code == 302


def test_a_code_works_once(client: FlaskClient, session: Session, account) -> None:  # type: ignore[no-untyped-def]
    _identify(client, "LN-SIGN-1")
    [code] = _codes_sent_to(session, account.borrower.phone)
    assert client.post("/signin/code", data={"code": code}).location.endswith("/home")
    thief = client.application.test_client()
    thief.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    _identify(thief, "LN-SIGN-1")
    response = thief.post("/signin/code", data={"code": code})
    assert thief.get("/home").status_code == 302, "an old code is not good for a new attempt"
    assert "not right" in response.get_data(as_text=True)


def test_a_code_is_bound_to_the_browser_that_asked_for_it(
    client: FlaskClient, session: Session, account
) -> None:  # type: ignore[no-untyped-def]
    _identify(client, "LN-SIGN-1")
    [code] = _codes_sent_to(session, account.borrower.phone)
    other = client.application.test_client()
    assert other.post("/signin/code", data={"code": code}).location.endswith("/signin")
    assert other.get("/home").status_code == 302


def test_a_code_expires_after_ten_minutes(client: FlaskClient, session: Session, account) -> None:  # type: ignore[no-untyped-def]
    _identify(client, "LN-SIGN-1")
    [code] = _codes_sent_to(session, account.borrower.phone)
    row = session.scalars(select(SigninCode)).one()
    row.created_at -= dt.timedelta(minutes=10)
    session.commit()
    response = client.post("/signin/code", data={"code": code})
    assert "expired" in response.get_data(as_text=True)
    assert client.get("/home").status_code == 302


def test_five_wrong_codes_end_the_code_even_for_the_right_one(
    client: FlaskClient, session: Session, account
) -> None:  # type: ignore[no-untyped-def]
    _identify(client, "LN-SIGN-1")
    [code] = _codes_sent_to(session, account.borrower.phone)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        response = client.post("/signin/code", data={"code": wrong})
    assert "Too many wrong codes" in response.get_data(as_text=True)
    response = client.post("/signin/code", data={"code": code})
    assert client.get("/home").status_code == 302


def test_a_new_code_replaces_the_old_and_resends_are_limited(
    client: FlaskClient, session: Session, account
) -> None:  # type: ignore[no-untyped-def]
    _identify(client, "LN-SIGN-1")
    assert client.post("/signin/resend").status_code == 302
    assert client.post("/signin/resend").status_code == 302
    first, _second, third = _codes_sent_to(session, account.borrower.phone)
    refused = client.post("/signin/resend", follow_redirects=True)
    assert "Please wait" in refused.get_data(as_text=True)
    assert len(_codes_sent_to(session, account.borrower.phone)) == 3
    if first != third:
        client.post("/signin/code", data={"code": first})
        assert client.get("/home").status_code == 302, "a replaced code no longer works"
    assert client.post("/signin/code", data={"code": third}).location.endswith("/home")


@pytest.mark.parametrize(
    ("identifier", "born", "message"),
    [
        ("", DOB, "Enter your account reference or mobile number."),
        ("LN-SIGN-1", "", "Enter your date of birth"),
        ("LN-SIGN-1", "15/03/1985x", "Enter your date of birth"),
        ("x" * 65, DOB, "Field cannot be longer than 64 characters."),
    ],
)
def test_bad_sign_in_input_gets_a_message_and_nothing_is_recorded(
    client: FlaskClient, session: Session, identifier: str, born: str, message: str
) -> None:
    response = _identify(client, identifier, born)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(SigninAttempt)) == 0


def test_signing_out_makes_a_copied_cookie_useless(
    client: FlaskClient, session: Session, account, app
) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, account.borrower)
    copied = app.test_client()
    copied.set_cookie("accord_session", client.get_cookie("accord_session").value)
    assert copied.get("/home").status_code == 200
    client.post("/signout")
    assert copied.get("/home").status_code == 302


def test_sign_out_everywhere_ends_every_session(client: FlaskClient, session: Session, account, app) -> None:  # type: ignore[no-untyped-def]
    phone = sign_in(app.test_client(), account.borrower)
    sign_in(client, account.borrower)
    assert client.post("/signout-everywhere").status_code == 302
    assert phone.get("/home").status_code == 302
    session.refresh(account.borrower)
    assert account.borrower.session_version == 2


def test_an_idle_borrower_session_ends_after_fifteen_minutes(client: FlaskClient, account) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, account.borrower)
    with client.session_transaction() as sess:
        sess["seen_at"] -= 16 * 60
    response = client.get("/home")
    assert response.location.endswith("/signin")


def test_a_staff_session_is_not_a_borrower_session(client: FlaskClient, staff_of) -> None:  # type: ignore[no-untyped-def]
    from workflows.access import Role

    sign_in(client, staff_of(Role.ADMIN))
    assert client.get("/home").status_code == 302


def test_a_borrower_session_is_not_a_staff_session(client: FlaskClient, account) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, account.borrower)
    assert client.get("/staff/").location.startswith("/staff/login")
    assert isinstance(account.borrower, Borrower)


@pytest.mark.parametrize("fragment", ["34", "001234", "8001234", "38000"])
def test_a_fragment_of_a_phone_number_identifies_nobody(
    client: FlaskClient, session: Session, fragment: str
) -> None:
    owner = factories.borrower(session, phone="+8613800001234")
    factories.account(session, owner=owner)
    _identify(client, fragment)
    assert _codes_sent_to(session, "+8613800001234") == []


def test_a_fourth_sign_in_within_fifteen_minutes_sends_nothing_and_a_resend_says_wait(
    session: Session, account, app
) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        _identify(app.test_client(), "LN-SIGN-1")
    fourth = app.test_client()
    fourth.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert _identify(fourth, "LN-SIGN-1").location == "/signin/code"
    assert len(_codes_sent_to(session, account.borrower.phone)) == 3
    response = fourth.post("/signin/code", data={"code": "123456"})
    assert "That code is not right" in response.get_data(as_text=True)
    waiting = fourth.post("/signin/resend", follow_redirects=True)
    assert "Please wait" in waiting.get_data(as_text=True)


def test_asking_for_codes_is_rate_limited_per_address(make_app, database_url: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app(DATABASE_URL=database_url, WTF_CSRF_ENABLED=False, BORROWER_SIGNIN_RATE_LIMIT="2 per hour")
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    statuses = [_identify(client, "", "").status_code for _ in range(3)]  # refused input: nothing is stored
    assert statuses == [422, 422, 429]
    assert "Too many attempts" in _identify(client, "", "").get_data(as_text=True)
